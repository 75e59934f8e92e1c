/// Why a Redis command did not produce a reply.
public enum RedisError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Could not connect, or the connection broke; the client reconnects by itself on the next command.
    case unavailable(String)
    /// Connecting or waiting for a reply took longer than the configured timeout.
    case timeout
    /// Redis answered with an error reply.
    case server(String)
    /// The reply did not have the shape the caller expected.
    case unexpectedReply(String)
    /// The client has been shut down.
    case shutdown

    public var description: String {
        switch self {
        case .unavailable(let why): "Redis unavailable: \(why)"
        case .timeout: "Redis timed out"
        case .server(let message): "Redis error: \(message)"
        case .unexpectedReply(let what): "unexpected Redis reply: \(what)"
        case .shutdown: "Redis client shut down"
        }
    }

    /// True when the failure says nothing about the command itself: retrying later may succeed.
    public var isTransient: Bool {
        switch self {
        case .unavailable, .timeout: true
        case .server(let message):
            message.hasPrefix("LOADING") || message.hasPrefix("BUSY") || message.hasPrefix("TRYAGAIN") || message.hasPrefix("CLUSTERDOWN")
                || message.hasPrefix("MOVED") || message.hasPrefix("ASK ") || message.hasPrefix("MASTERDOWN")
        case .unexpectedReply, .shutdown: false
        }
    }
}
