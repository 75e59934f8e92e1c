/// Why a Kafka call failed.
public enum KafkaError: Error, Sendable, Equatable, CustomStringConvertible {
    case configuration(String)
    /// The message could not be queued (e.g. the local queue is full and stayed full).
    case produce(String)
    /// The broker did not acknowledge the message (timeout, broker down, …).
    case delivery(String)
    /// The producer hit an unrecoverable error (idempotence broken); create a new one.
    case fatal(String)
    case closed

    public var description: String {
        switch self {
        case .configuration(let why): "Kafka configuration: \(why)"
        case .produce(let why): "Kafka produce failed: \(why)"
        case .delivery(let why): "Kafka delivery failed: \(why)"
        case .fatal(let why): "Kafka producer failed fatally: \(why)"
        case .closed: "Kafka producer closed"
        }
    }
}
