import PostgresAdapter

/// ``TransitionStore`` on PostgreSQL: one `apply_transitions_fenced` call (migrations 6 and 8) per
/// batch, on a pool session: several buckets' batches are applied at once. The call fails
/// (``PostgresError/SQLState/notLeader``) unless the lease's session still holds the leader lock,
/// and a new leader waits for the calls already past that check before it writes.
struct PostgresTransitionStore: TransitionStore {
    let db: PostgresPool

    func apply(_ batch: TransitionBatch, bucket: Int, offlineAfter: Duration, lease: Leadership.Lease) async throws -> Int {
        try await db.query(
            """
            SELECT apply_transitions_fenced(\(lease.backendPID)::int, \(bucket)::int, \(batch.ids)::text[], \(batch.devices)::uuid[],
                \(batch.kinds)::text[], \(batch.atMs)::bigint[], \(batch.lastMs)::bigint[], \(batch.reasons)::text[],
                \(offlineAfter.seconds)::float8)
            """
        ).first(Int.self) ?? 0
    }
}
