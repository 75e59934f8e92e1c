import HeartbeatDomain
import PostgresAdapter

/// ``HistoryStore`` on PostgreSQL: `COPY` into `heartbeat_history` (see ``HistoryBatch``).
struct PostgresHistoryStore: HistoryStore {
    let db: PostgresPool

    func write(_ batch: HistoryBatch, lease: Leadership.Lease) async throws {
        // fenced: an instance that lost the lock (and does not know yet) writes nothing
        try await db.query("SELECT assert_leader(\(lease.backendPID)::int)")
        do {
            try await db.copyIn(Self.copy, data: batch.data)
        } catch let error as PostgresError where error.sqlState == .checkViolation {
            // no partition for a row (a day not created yet): create it and retry once
            let days = batch.receivedAt.map { $0 / 86_400_000 * 86_400_000 }
            try await db.query(
                """
                SELECT ensure_history_partition((to_timestamp(t / 1000.0) AT TIME ZONE 'UTC')::date)
                FROM (SELECT DISTINCT unnest(\(days)::bigint[]) AS t) days
                """)
            try await db.copyIn(Self.copy, data: batch.data)
        }
    }

    func recordLastHeartbeats(_ newest: [DeviceID: Int64]) async throws {
        // by primary key, with a cached plan (migration 9)
        try await db.query(
            PostgresQuery(
                unsafeSQL: "SELECT record_last_heartbeats($1::uuid[], $2::bigint[])",
                binds: [Array(newest.keys).postgresText, Array(newest.values).postgresText]))
    }

    func maintainPartitions(retentionDays: Int) async throws -> Int {
        try await db.query("SELECT ensure_history_partition(d::date) FROM generate_series(current_date - 1, current_date + 3, '1 day') d")
        return try await db.query("SELECT drop_history_partitions_before(current_date - \(retentionDays)::int)").first(Int.self) ?? 0
    }

    func purge(_ policy: RetentionPolicy) async throws -> Int {
        var total = 0
        let statements: [(Double) -> PostgresQuery] = [
            { Self.purgeOutbox($0, keepingUnalerted: policy.keepsUnalerted) }, Self.purgeReplayKeys, Self.purgeEvents,
        ]
        for (statement, age) in zip(statements, [policy.outbox, policy.outbox, policy.events]) {
            while true {
                let deleted = try await db.query(statement(age.seconds)).affectedRows
                total += deleted
                if deleted < Self.purgeSlice { break }
            }
        }
        return total
    }

    /// ``HistoryBatch``'s binary stream into its columns.
    static let copy = "COPY heartbeat_history (\(HistoryBatch.columns)) FROM STDIN WITH (FORMAT binary)"

    /// Rows per purge statement, so no statement holds locks for long.
    static let purgeSlice = 10_000

    private static func purgeOutbox(_ seconds: Double, keepingUnalerted: Bool) -> PostgresQuery {
        """
        DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE published_at < now() - \(seconds) * interval '1 second'
            AND (alerted_at IS NOT NULL OR NOT \(keepingUnalerted)) LIMIT \(purgeSlice))
        """
    }

    private static func purgeReplayKeys(_ seconds: Double) -> PostgresQuery {
        """
        DELETE FROM applied_transitions WHERE source IN
            (SELECT source FROM applied_transitions WHERE applied_at < now() - \(seconds) * interval '1 second' LIMIT \(purgeSlice))
        """
    }

    private static func purgeEvents(_ seconds: Double) -> PostgresQuery {
        """
        DELETE FROM device_status_events WHERE id IN
            (SELECT id FROM device_status_events WHERE at < now() - \(seconds) * interval '1 second' LIMIT \(purgeSlice))
        """
    }
}
