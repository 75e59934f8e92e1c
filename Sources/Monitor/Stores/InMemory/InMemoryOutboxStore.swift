import Synchronization

/// ``OutboxStore`` in memory, for tests of the relay; marking is fenced like PostgreSQL's
/// `assert_leader`: a lease other than ``leaderEpoch`` is refused.
final class InMemoryOutboxStore: OutboxStore {
    struct Row: Sendable, Equatable {
        var message: OutboxMessage
        var published = false
    }

    let rows = Mutex<[Row]>([])
    /// The epoch of the lease holding the lock; `nil` accepts any.
    let leaderEpoch = Mutex<Int?>(nil)

    struct NotLeader: Error {}

    func add(topic: String, key: String, payload: String) {
        rows.withLock { $0.append(Row(message: OutboxMessage(id: Int64($0.count + 1), topic: topic, key: key, payload: payload))) }
    }

    func unpublished(topic: String, limit: Int) async throws -> [OutboxMessage] {
        rows.withLock { Array($0.filter { !$0.published && $0.message.topic == topic }.prefix(limit).map(\.message)) }
    }

    func markPublished(_ ids: [Int64], lease: Leadership.Lease) async throws {
        if let epoch = leaderEpoch.withLock({ $0 }), epoch != lease.epoch { throw NotLeader() }
        let marked = Set(ids)
        rows.withLock { rows in
            for index in rows.indices where marked.contains(rows[index].message.id) { rows[index].published = true }
        }
    }

    func backlog() async throws -> (rows: Int, oldestAgeSeconds: Double) {
        (rows.withLock { $0.filter { !$0.published }.count }, 0)
    }
}
