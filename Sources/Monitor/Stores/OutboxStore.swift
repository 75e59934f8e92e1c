/// The outbox: events committed with the status change they announce, waiting for Kafka.
protocol OutboxStore: Sendable {
    /// The oldest unpublished rows of `topic`, in id order.
    func unpublished(topic: String, limit: Int) async throws -> [OutboxMessage]
    /// Marks rows published, fenced by the leader lock (fails once `lease` is not the lock holder's).
    func markPublished(_ ids: [Int64], lease: Leadership.Lease) async throws
    /// Unpublished rows, and the age of the oldest in seconds (0 when none).
    func backlog() async throws -> (rows: Int, oldestAgeSeconds: Double)
}

/// One outbox row: an event for a topic, keyed by device id.
struct OutboxMessage: Sendable, Equatable {
    var id: Int64
    var topic: String
    var key: String
    var payload: String
}
