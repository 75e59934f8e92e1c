import PostgresAdapter

/// ``OutboxStore`` on PostgreSQL, on a pool of its own so relaying never waits behind the ops API.
struct PostgresOutboxStore: OutboxStore {
    let db: PostgresPool

    func unpublished(topic: String, limit: Int) async throws -> [OutboxMessage] {
        try await db.query(Self.unpublished(topic: topic, limit: limit)).decode((Int64, String, String, String).self).map {
            OutboxMessage(id: $0.0, topic: $0.1, key: $0.2, payload: $0.3)
        }
    }

    /// A topic's oldest unpublished rows: a plain scan of `outbox_unpublished_by_topic` (migration 11).
    static func unpublished(topic: String, limit: Int) -> PostgresQuery {
        """
        SELECT id, topic, key, payload FROM outbox WHERE published_at IS NULL AND topic = \(topic) ORDER BY id LIMIT \(limit)
        """
    }

    func markPublished(_ ids: [Int64], lease: Leadership.Lease) async throws {
        try await db.query(
            """
            UPDATE outbox SET published_at = now() FROM (SELECT assert_leader(\(lease.backendPID)::int)) fence WHERE id = ANY(\(ids)::bigint[])
            """)
    }

    func backlog() async throws -> (rows: Int, oldestAgeSeconds: Double) {
        try await db.query(
            """
            SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 FROM outbox WHERE published_at IS NULL
            """
        ).first((Int, Double).self) ?? (0, 0)
    }
}
