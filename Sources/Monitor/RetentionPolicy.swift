import HeartbeatDomain
import PostgresAdapter

/// How long the monitor keeps what it no longer needs: published outbox rows, status events and
/// the replay keys of applied transitions. Purged in slices of 10,000 rows so no statement holds
/// locks for long.
struct RetentionPolicy: Sendable {
    /// Published outbox rows (`OUTBOX_RETENTION_HOURS`, default 168): kept a while to answer
    /// "was it sent?", and the replay keys of applied transitions with them (a replay comes within
    /// seconds of a crash, never days).
    var outbox: Duration
    /// Device status events (`EVENTS_RETENTION_DAYS`, default 90): the events and uptime history.
    var events: Duration

    /// Deletes what is past retention. Returns the rows deleted.
    func purge(_ db: PostgresPool) async throws -> Int {
        let statements: [(String, Duration)] = [
            ("DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE published_at < now() - $1::float8 * interval '1 second' LIMIT 10000)", outbox),
            ("DELETE FROM applied_transitions WHERE source IN (SELECT source FROM applied_transitions WHERE applied_at < now() - $1::float8 * interval '1 second' LIMIT 10000)", outbox),
            ("DELETE FROM device_status_events WHERE id IN (SELECT id FROM device_status_events WHERE at < now() - $1::float8 * interval '1 second' LIMIT 10000)", events),
        ]
        var total = 0
        for (sql, age) in statements {
            while true {
                let deleted = try await db.query(sql, [String(Double(age.milliseconds) / 1000)]).affectedRows
                total += deleted
                if deleted < 10_000 { break }
            }
        }
        return total
    }
}
