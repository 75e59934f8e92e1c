import KafkaAdapter

/// Where outbox events go: Kafka in production.
protocol EventPublisher: Sendable {
    /// Sends the messages; one result per message, in order, once each is acknowledged or failed.
    func publish(_ messages: [KafkaProducer.Message]) async -> [Result<Void, KafkaError>]
}
