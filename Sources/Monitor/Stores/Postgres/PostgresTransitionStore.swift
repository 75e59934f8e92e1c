import PostgresAdapter

/// ``TransitionStore`` on PostgreSQL: one `apply_transitions` call (migration 4) per batch, on the
/// lease's own connection: the advisory lock and the writes share a session, so the lock is the fence.
struct PostgresTransitionStore: TransitionStore {
    func apply(_ batch: TransitionBatch, bucket: Int, offlineAfter: Duration, lease: Leadership.Lease) async throws -> Int {
        guard let connection = lease.connection else { throw PostgresError.closed }
        return try await connection.query(
            """
            SELECT apply_transitions(\(bucket)::int, \(batch.ids)::text[], \(batch.devices)::uuid[], \(batch.kinds)::text[],
                \(batch.atMs)::bigint[], \(batch.lastMs)::bigint[], \(batch.reasons)::text[], \(offlineAfter.seconds)::float8)
            """
        ).first(Int.self) ?? 0
    }
}
