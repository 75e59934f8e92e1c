import KafkaAdapter
import Logging
import PostgresAdapter
import ServiceLifecycle

/// While leading, publishes outbox rows to Kafka in id order and marks them published only after
/// the broker acknowledged them. A Kafka outage leaves rows in the outbox (retried with backoff);
/// nothing is dropped. Delivery is at-least-once: consumers dedupe on `event_id`.
///
/// Each topic is read on its own (oldest rows first), so rows one topic cannot take (a topic
/// refused by the cluster, say) do not hold back the other topic's events. Marking rows published
/// is fenced by the leader lock.
struct OutboxRelay: Service {
    let postgresURL: String
    let brokers: String
    /// Extra librdkafka properties (`KAFKA_PROPERTIES`).
    let properties: [String: String]
    /// The Kafka topic each outbox topic is published to (`KAFKA_TOPIC_ONLINE`, `KAFKA_TOPIC_OFFLINE`).
    let topicNames: [String: String]
    let leadership: Leadership
    let batchSize: Int
    let pollInterval: Duration
    let metrics: MonitorMetrics
    let logger: Logger

    func makeProducer() throws -> KafkaProducer {
        try KafkaProducer(brokers: brokers, clientID: "heartbeat-monitor", messageTimeout: .seconds(10), properties: properties)
    }

    func run() async throws {
        var producer = try makeProducer()
        // its own connection (reconnected when broken), so relaying never waits behind the ops API
        let db = PostgresPool(url: postgresURL, applicationName: "heartbeat-monitor-outbox", size: 1)
        var backoff = Duration.milliseconds(200)
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            var pause = pollInterval
            if let lease = leadership.current {
                do {
                    if let fatal = producer.fatalError() {
                        // idempotence is broken for this producer: start a new one; the rows are still in the outbox
                        logger.error("Kafka producer failed fatally; creating a new one", metadata: ["error": "\(fatal)"])
                        producer = try makeProducer()
                    }
                    let (published, failed) = try await relayOnce(db, producer: producer, lease: lease)
                    if failed > 0 {
                        pause = backoff
                        backoff = min(backoff * 2, .seconds(5))
                    } else {
                        backoff = .milliseconds(200)
                        if published > 0 { pause = .zero }
                    }
                } catch {
                    logger.error("outbox relay failed", metadata: ["error": "\(error)"])
                    pause = backoff
                    backoff = min(backoff * 2, .seconds(5))
                }
            }
            if pause > .zero, !(await sleepUnlessShuttingDown(pause)) { break }
        }
        if await producer.flush(timeout: .seconds(5)) == false {
            logger.warning("Kafka flush timed out; unacknowledged events stay in the outbox and are sent again")
        }
        await db.close()
    }

    /// Publishes one batch. Returns how many rows were published and how many failed.
    func relayOnce(_ connection: PostgresPool, producer: KafkaProducer, lease: Leadership.Lease) async throws -> (Int, Int) {
        var rows: [[String?]] = []
        for topic in Self.topics {
            rows += try await connection.query(
                "SELECT id, topic, key, payload FROM outbox WHERE published_at IS NULL AND topic = $1 ORDER BY id LIMIT $2",
                [topic, String(batchSize)]).rows
        }
        try await recordBacklog(connection)
        guard !rows.isEmpty else { return (0, 0) }
        let messages = rows.map { row in
            KafkaProducer.Message(topic: row[1].map { topicNames[$0] ?? $0 } ?? "", key: row[2] ?? "", value: row[3] ?? "")
        }
        let results = await producer.send(messages)
        var delivered: [String] = []
        var failures = 0
        for (row, result) in zip(rows, results) {
            switch result {
            case .success: delivered.append(row[0] ?? "")
            case .failure(let error):
                if failures == 0 { logger.warning("Kafka delivery failed; will retry", metadata: ["error": "\(error)"]) }
                failures += 1
            }
        }
        if !delivered.isEmpty {
            try await connection.query(
                "UPDATE outbox SET published_at = now() FROM (SELECT assert_leader($2::int)) fence WHERE id = ANY($1::bigint[])",
                [PostgresArray.plain(delivered), lease.backendPID])
            metrics.published.increment(by: delivered.count)
        }
        if failures > 0 { metrics.kafkaDeliveryErrors.increment(by: failures) }
        return (delivered.count, failures)
    }

    /// The topics outbox rows are written for (by `apply_transitions`).
    static let topics = ["device.online", "device.offline"]

    private func recordBacklog(_ connection: PostgresPool) async throws {
        let backlog = try await connection.query(
            "SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0) FROM outbox WHERE published_at IS NULL")
        metrics.outboxBacklog.record(Int(backlog.value(0, "count") ?? "0") ?? 0)
        metrics.outboxOldestAge.record(Double(backlog.rows.first?[1] ?? "0") ?? 0)
    }
}
