import Foundation
import PostgresAdapter
import Testing

@testable import Monitor

/// The relay's reads on PostgreSQL once many outbox rows are published and not yet vacuumed (after
/// a mass of devices came online, say): they must not keep visiting those rows.
@Suite struct OutboxStoreTests {
    /// Shared buffers `query` touches, from `EXPLAIN (ANALYZE, BUFFERS)`.
    static func buffersTouched(_ query: PostgresQuery, on connection: PostgresConnection) async throws -> Int {
        let plan = try await connection.query(
            PostgresQuery(unsafeSQL: "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + query.sql, binds: query.binds)
        ).scalar
        let json = try #require(plan.flatMap { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [[String: Any]] })
        let top = try #require(json.first?["Plan"] as? [String: Any])
        return (top["Shared Hit Blocks"] as? Int ?? 0) + (top["Shared Read Blocks"] as? Int ?? 0)
    }

    @Test func theRelaysReadSkipsPublishedRowsWithoutVisitingThem() async throws {
        let database = try await TestDatabase.create()
        try await Migrations.run(on: database.connection)
        let db = database.connection
        try await db.simpleQuery(
            """
            INSERT INTO outbox (event_id, topic, key, payload)
                SELECT gen_random_uuid(), 'device.online', 'device-' || i, '{"event":"' || repeat('x', 300) || '"}'
                FROM generate_series(1, 10000) i;
            UPDATE outbox SET published_at = now();
            INSERT INTO outbox (event_id, topic, key, payload) VALUES (gen_random_uuid(), 'device.online', 'waiting', '{}');
            """)
        let pool = PostgresPool(url: database.url, applicationName: "relay", size: 1)
        let store = PostgresOutboxStore(db: pool)
        #expect(try await store.unpublished(topic: "device.online", limit: 100).map(\.key) == ["waiting"])
        #expect(try await store.unpublished(topic: "device.offline", limit: 100).isEmpty)
        // the first read passed the 10,000 published rows once; the next reads skip them in the index
        // (~50 pages). Migration 1's index gave a bitmap scan that read the rows' heap pages too,
        // every time: ~530 pages here.
        let touched = try await Self.buffersTouched(PostgresOutboxStore.unpublished(topic: "device.online", limit: 100), on: db)
        #expect(touched < 150, "the relay's read touched \(touched) pages")
        await pool.close()
        await database.drop()
    }
}
