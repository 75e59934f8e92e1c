import Logging
import ServiceLifecycle
import Synchronization

/// A Redis client for servers: a few pipelined connections, each on its own thread.
///
/// Safe to share between any number of tasks. Commands are spread round-robin over the
/// connections; each connection sends everything queued since its last round trip as one
/// pipeline. Broken connections are replaced on the next command; connecting and waiting for a
/// reply are bounded by ``Configuration/timeout`` and surface as ``RedisError/timeout``.
///
/// Run it as a `Service` so it closes its connections at graceful shutdown, after the services
/// that use it (list it before them in the `ServiceGroup`).
public final class RedisClient: Sendable {
    public struct Configuration: Sendable {
        public var endpoint: RedisEndpoint
        /// Connect and reply timeout.
        public var timeout: Duration
        /// Number of connections (each with its own thread).
        public var connections: Int
        /// After a failed connect, commands fail at once for this long before the next attempt.
        public var reconnectBackoff: Duration

        public init(endpoint: RedisEndpoint, timeout: Duration = .seconds(1), connections: Int = 2, reconnectBackoff: Duration = .milliseconds(100)) {
            self.endpoint = endpoint
            self.timeout = timeout
            self.connections = max(1, connections)
            self.reconnectBackoff = reconnectBackoff
        }
    }

    private let pipelines: [RedisPipeline]
    private let next = Atomic<Int>(0)
    let logger: Logger

    public init(configuration: Configuration, logger: Logger) {
        self.logger = logger
        self.pipelines = (0..<configuration.connections).map { index in
            RedisPipeline(
                endpoint: configuration.endpoint, timeout: configuration.timeout,
                reconnectBackoff: configuration.reconnectBackoff, name: "redis-\(index)", logger: logger)
        }
    }

    /// Sends one command and returns its reply. An error reply is returned as ``RedisValue/error(_:)``,
    /// not thrown; transport failures throw ``RedisError``.
    public func send(_ arguments: [String]) async throws -> RedisValue {
        try await sendEncoded(RedisCommandEncoder.encode(arguments))
    }

    /// Sends one command and throws ``RedisError/server(_:)`` for an error reply.
    @discardableResult
    public func execute(_ arguments: [String]) async throws -> RedisValue {
        let reply = try await send(arguments)
        if case .error(let message) = reply { throw RedisError.server(message) }
        return reply
    }

    func sendEncoded(_ command: [UInt8]) async throws -> RedisValue {
        let index = next.wrappingAdd(1, ordering: .relaxed).oldValue
        return try await pipelines[index % pipelines.count].send(command)
    }

    /// Finishes queued commands and closes every connection. Later commands fail with ``RedisError/shutdown``.
    public func shutdown() async {
        for pipeline in pipelines { await pipeline.shutdown() }
    }
}

extension RedisClient: Service {
    /// Waits for graceful shutdown, then closes the connections.
    public func run() async throws {
        try? await gracefulShutdown()
        await shutdown()
    }
}
