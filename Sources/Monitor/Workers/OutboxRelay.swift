import KafkaAdapter
import Logging
import ServiceLifecycle

/// While leading, publishes outbox rows in id order and marks them published only after the
/// broker acknowledged them. A Kafka outage leaves rows in the outbox (retried with backoff);
/// nothing is dropped. Delivery is at-least-once: consumers dedupe on `event_id`.
///
/// Each topic is read on its own (oldest rows first), so rows one topic cannot take (a topic
/// refused by the cluster, say) do not hold back the other topic's events. Marking rows published
/// is fenced by the leader lock.
struct OutboxRelay: Service {
    let outbox: any OutboxStore
    let publisher: any EventPublisher
    /// The Kafka topic each outbox topic is published to (`KAFKA_TOPIC_ONLINE`, `KAFKA_TOPIC_OFFLINE`).
    let topicNames: [String: String]
    let leadership: Leadership
    let batchSize: Int
    let pollInterval: Duration
    let metrics: MonitorMetrics
    let logger: Logger
    /// The backlog gauges are read at most once a second: counting the unpublished rows costs
    /// O(backlog), and during a burst of 100,000 events it ran before each batch.
    let backlogCount = Cadence()

    /// The topics outbox rows are written for (by `apply_transitions`).
    static let topics = ["device.online", "device.offline"]

    func run() async throws {
        let backoff = Backoff()
        let loop = LeaderLoop(leadership: leadership, interval: pollInterval, name: "outbox relay", logger: logger) { _, _ in backoff.failed() }
        await loop.run { lease in
            await backoff.wait()
            let (published, failed) = try await relayOnce(lease)
            if failed > 0 { backoff.failed() } else { backoff.succeeded() }
            return published > 0 && failed == 0
        }
    }

    /// Publishes one batch per topic. Returns how many rows were published and how many failed.
    func relayOnce(_ lease: Leadership.Lease) async throws -> (published: Int, failed: Int) {
        var rows: [OutboxMessage] = []
        for topic in Self.topics { rows += try await outbox.unpublished(topic: topic, limit: batchSize) }
        if rows.isEmpty {
            // every topic's read found nothing: no backlog, and no query to learn it
            metrics.outboxBacklog.record(0)
            metrics.outboxOldestAge.record(0)
        } else if backlogCount.isDue(every: .seconds(1)) {
            let backlog = try await outbox.backlog()
            metrics.outboxBacklog.record(backlog.rows)
            metrics.outboxOldestAge.record(backlog.oldestAgeSeconds)
            backlogCount.done()
        }
        guard !rows.isEmpty else { return (0, 0) }
        let results = await publisher.publish(
            rows.map { KafkaProducer.Message(topic: topicNames[$0.topic] ?? $0.topic, key: $0.key, value: $0.payload) })
        var delivered: [Int64] = []
        var failures = 0
        for (row, result) in zip(rows, results) {
            switch result {
            case .success: delivered.append(row.id)
            case .failure(let error):
                if failures == 0 { logger.warning("Kafka delivery failed; will retry", metadata: ["error": "\(error)"]) }
                failures += 1
            }
        }
        if !delivered.isEmpty {
            try await outbox.markPublished(delivered, lease: lease)
            metrics.published.increment(by: delivered.count)
        }
        if failures > 0 { metrics.kafkaDeliveryErrors.increment(by: failures) }
        return (delivered.count, failures)
    }
}
