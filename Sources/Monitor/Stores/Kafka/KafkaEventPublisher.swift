import KafkaAdapter
import Logging
import ServiceLifecycle
import Synchronization

/// ``EventPublisher`` on librdkafka, and the producer's lifetime as a service: replaced when it
/// fails fatally (idempotence broken; the rows are still in the outbox), flushed at shutdown after
/// the relay stopped (list it before the relay: services stop in reverse order).
final class KafkaEventPublisher: EventPublisher, Service {
    private let makeProducer: @Sendable () throws -> KafkaProducer
    private let producer: Mutex<KafkaProducer>
    let logger: Logger

    init(brokers: String, properties: [String: String], logger: Logger) throws {
        let make: @Sendable () throws -> KafkaProducer = {
            try KafkaProducer(brokers: brokers, clientID: "heartbeat-monitor", messageTimeout: .seconds(10), properties: properties)
        }
        self.makeProducer = make
        self.producer = Mutex(try make())
        self.logger = logger
    }

    func publish(_ messages: [KafkaProducer.Message]) async -> [Result<Void, KafkaError>] {
        let current = producer.withLock { $0 }
        if let fatal = current.fatalError() {
            logger.error("Kafka producer failed fatally; creating a new one", metadata: ["error": "\(fatal)"])
            do {
                let fresh = try makeProducer()
                producer.withLock { $0 = fresh }
                return await fresh.send(messages)
            } catch {
                return messages.map { _ in .failure(fatal) }
            }
        }
        return await current.send(messages)
    }

    func run() async throws {
        try? await gracefulShutdown()
        if await producer.withLock({ $0 }).flush(timeout: .seconds(5)) == false {
            logger.warning("Kafka flush timed out; unacknowledged events stay in the outbox and are sent again")
        }
    }
}
