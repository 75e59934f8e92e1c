import Configuration
import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore

#if canImport(Glibc)
    import Glibc
    import HeartbeatDomain
    import RedisAdapter
#endif

/// Limits of an HTTP listener, so slow or idle clients cannot hold its descriptors: connections
/// idle (or still trickling their request head) for `idleTimeout` are closed, and no more than
/// `maxConnections` are accepted at once (the rest wait in the listen backlog).
public struct HTTPServerLimits: Sendable, Equatable {
    /// `HTTP_IDLE_TIMEOUT_SECONDS` (default 30).
    public var idleTimeout: Duration
    /// `HTTP_MAX_CONNECTIONS` (default: the process's descriptor limit less 128 for its own
    /// Redis/PostgreSQL/Kafka connections, at most 10,000).
    public var maxConnections: Int

    public init(idleTimeout: Duration, maxConnections: Int) {
        self.idleTimeout = idleTimeout
        self.maxConnections = maxConnections
    }

    /// The server builder with the idle timeout.
    public var server: HTTPServerBuilder {
        .http1(configuration: http1)
    }

    /// The HTTP/1 channel configuration with the idle timeout.
    public var http1: HTTP1Channel.Configuration {
        .init(idleTimeout: .nanoseconds(idleTimeout.nanoseconds))
    }

    /// The application configuration for `address`, with the connection cap.
    public func configuration(address: BindAddress, serverName: String, logger: Logger) -> ApplicationConfiguration {
        ApplicationConfiguration(address: address, serverName: serverName, availableConnectionsDelegate: .maximum(maxConnections, logger: logger))
    }

    /// The default connection cap from the descriptor limit.
    public static var defaultMaxConnections: Int {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1000 }
        return max(64, min(10_000, Int(clamping: limit.rlim_cur) - 128))
    }
}

extension ConfigReader {
    /// `HTTP_IDLE_TIMEOUT_SECONDS` and `HTTP_MAX_CONNECTIONS`.
    public func httpServerLimits() throws(ConfigurationError) -> HTTPServerLimits {
        HTTPServerLimits(
            idleTimeout: try seconds("http.idle.timeout.seconds", default: 30),
            maxConnections: try integer("http.max.connections", default: HTTPServerLimits.defaultMaxConnections, in: 1...1_000_000))
    }
}
