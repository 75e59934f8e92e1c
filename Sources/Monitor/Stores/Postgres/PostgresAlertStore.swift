import HeartbeatDomain
import PostgresAdapter

/// ``AlertStore`` on PostgreSQL: the outbox's `alerted_at` column (migration 5) and the devices table.
struct PostgresAlertStore: AlertStore {
    let db: PostgresPool

    func unalerted(limit: Int) async throws -> [StatusAlertEvent] {
        try await db.query(
            """
            SELECT o.id, d.id, coalesce(d.name, ''), e.to_status,
                   floor(extract(epoch FROM coalesce(e.at, o.created_at)) * 1000)::bigint,
                   floor(extract(epoch FROM coalesce(e.last_heartbeat, d.last_heartbeat)) * 1000)::bigint
            FROM outbox o
            JOIN devices d ON d.id = o.key::uuid
            LEFT JOIN device_status_events e ON e.event_id = o.event_id
            WHERE o.alerted_at IS NULL ORDER BY o.id LIMIT \(limit)
            """
        ).decode((Int64, DeviceID, String, String?, UTCTimestamp, UTCTimestamp?).self).map { row in
            let kind: StatusTransition.Kind = row.3 == "online" ? .online : .offline
            return StatusAlertEvent(
                outboxID: row.0, device: OfflineDevice(id: row.1, name: row.2, since: row.4, lastHeartbeat: row.5), kind: kind, at: row.4)
        }
    }

    func markAlerted(_ outboxIDs: [Int64], lease: Leadership.Lease) async throws {
        try await db.query(
            """
            UPDATE outbox SET alerted_at = now() FROM (SELECT assert_leader(\(lease.backendPID)::int)) fence WHERE id = ANY(\(outboxIDs)::bigint[])
            """)
    }

    func offlineDevices(after: DeviceID?, limit: Int) async throws -> [OfflineDevice] {
        try await db.query(
            """
            SELECT id, coalesce(name, ''), floor(extract(epoch FROM coalesce(status_changed_at, now())) * 1000)::bigint,
                   floor(extract(epoch FROM last_heartbeat) * 1000)::bigint
            FROM devices WHERE status = 'offline' AND (\(after)::uuid IS NULL OR id > \(after)::uuid) ORDER BY id LIMIT \(limit)
            """
        ).decode((DeviceID, String, UTCTimestamp, UTCTimestamp?).self).map { OfflineDevice(id: $0.0, name: $0.1, since: $0.2, lastHeartbeat: $0.3) }
    }
}
