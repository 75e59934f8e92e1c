import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// A Redis client for servers: a few pipelined connections, each on its own thread.
///
/// Safe to share between any number of tasks. Commands are spread round-robin over the
/// connections; each connection sends everything queued since its last round trip as one
/// pipeline. Broken connections are replaced on the next command; connecting and waiting for a
/// reply are bounded by ``Configuration/timeout`` and surface as ``RedisError/timeout``.
///
/// With ``Configuration/clusterNodes`` set, it speaks to a Redis Cluster instead: each command
/// goes to the primary of its key's slot, over that node's own pipelined connections (see
/// ``RedisClusterRouter``); commands without a key go to any primary.
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
        /// Seed nodes of a Redis Cluster: when set, cluster mode (``endpoint``'s host and port are
        /// then unused; its credentials apply to every node). Connections are per node.
        public var clusterNodes: [RedisClusterMap.Node]?

        public init(
            endpoint: RedisEndpoint, timeout: Duration = .seconds(1), connections: Int = 2, reconnectBackoff: Duration = .milliseconds(100),
            clusterNodes: [RedisClusterMap.Node]? = nil
        ) {
            self.endpoint = endpoint
            self.timeout = timeout
            self.connections = max(1, connections)
            self.reconnectBackoff = reconnectBackoff
            self.clusterNodes = clusterNodes
        }
    }

    private let pipelines: [RedisPipeline]
    private let cluster: RedisClusterRouter?
    private let next = Atomic<Int>(0)
    private let endpoint: RedisEndpoint
    /// The connections of event loops that sent with ``send(_:on:completion:)``.
    private let loopConnections: RedisLoopConnections
    let logger: Logger

    public init(configuration: Configuration, logger: Logger) {
        self.logger = logger
        self.endpoint = configuration.endpoint
        self.loopConnections = RedisLoopConnections(
            timeout: configuration.timeout, reconnectBackoff: configuration.reconnectBackoff, logger: logger)
        if let seeds = configuration.clusterNodes, !seeds.isEmpty {
            self.cluster = RedisClusterRouter(seeds: seeds, configuration: configuration, loopConnections: loopConnections, logger: logger)
            self.pipelines = []
        } else {
            self.cluster = nil
            self.pipelines = (0..<configuration.connections).map { index in
                RedisPipeline(
                    endpoint: configuration.endpoint, timeout: configuration.timeout,
                    reconnectBackoff: configuration.reconnectBackoff, name: "redis-\(index)", logger: logger)
            }
        }
    }

    /// Sends one command and returns its reply. An error reply is returned as ``RedisValue/error(_:)``,
    /// not thrown; transport failures throw ``RedisError``.
    public func send(_ arguments: [String]) async throws -> RedisValue {
        try await send(encoded: RedisCommandEncoder.encode(arguments), key: routingKey(of: arguments))
    }

    /// Sends one command; `completion` gets the reply (error replies as ``RedisValue/error(_:)``) on
    /// the connection's thread, so it must not block. For callers on an event loop that hop back
    /// themselves: no Swift task per command (in cluster mode, none unless the command is
    /// redirected: see ``RedisClusterRouter/send(_:key:completion:)``).
    public func send(_ arguments: [String], completion: @escaping @Sendable (Result<RedisValue, any Error>) -> Void) {
        send(encoded: RedisCommandEncoder.encode(arguments), key: routingKey(of: arguments), completion: completion)
    }

    /// Sends one command from an event loop; `completion` runs on that loop. The command goes over
    /// the loop's own connection (``RedisLoopConnection``: no thread hand-off), in cluster mode the
    /// loop's connection to the slot's primary (see ``RedisClusterRouter/send(_:key:on:completion:)``).
    public func send(
        _ arguments: [String], on eventLoop: any EventLoop, completion: @escaping @Sendable (Result<RedisValue, any Error>) -> Void
    ) {
        send(
            encoded: RedisCommandEncoder.encode(arguments), key: routingKey(of: arguments), on: eventLoop,
            completion: completion)
    }

    // MARK: Encoded commands (`key`: the one that decides the slot in cluster mode)

    private func routingKey(of arguments: [String]) -> String? {
        cluster == nil ? nil : RedisCommandKey.of(arguments)
    }

    func send(encoded command: [UInt8], key: String?) async throws -> RedisValue {
        if let cluster { return try await cluster.send(command, key: key) }
        let index = next.wrappingAdd(1, ordering: .relaxed).oldValue
        return try await pipelines[index % pipelines.count].send(command)
    }

    func send(encoded command: [UInt8], key: String?, completion: @escaping @Sendable (Result<RedisValue, any Error>) -> Void) {
        if let cluster {
            cluster.send(command, key: key, completion: completion)
            return
        }
        let index = next.wrappingAdd(1, ordering: .relaxed).oldValue
        pipelines[index % pipelines.count].send(command, completion: completion)
    }

    func send(
        encoded command: [UInt8], key: String?, on eventLoop: any EventLoop,
        completion: @escaping @Sendable (Result<RedisValue, any Error>) -> Void
    ) {
        if let cluster {
            cluster.send(command, key: key, on: eventLoop, completion: completion)
            return
        }
        guard let connection = loopConnections.connection(to: endpoint, on: eventLoop) else {
            eventLoop.execute { completion(.failure(RedisError.shutdown)) }
            return
        }
        connection.send(command, completion: completion)
    }

    /// Sends a command without keys to every primary (the one server outside cluster mode) and
    /// returns their replies, error replies included; throws when one cannot be reached.
    public func sendToEachPrimary(_ arguments: [String]) async throws -> [RedisValue] {
        try await tryEachPrimary(arguments).map { try $0.get() }
    }

    /// Sends a command without keys to every primary: each one's reply (error replies included) or
    /// transport failure, so a caller can tell part of a cluster from none of it.
    public func tryEachPrimary(_ arguments: [String]) async throws -> [Result<RedisValue, any Error>] {
        if let cluster { return try await cluster.tryEachPrimary(RedisCommandEncoder.encode(arguments)) }
        do {
            return [.success(try await send(arguments))]
        } catch {
            return [.failure(error)]
        }
    }

    /// Sends one command and throws ``RedisError/server(_:)`` for an error reply.
    @discardableResult
    public func execute(_ arguments: [String]) async throws -> RedisValue {
        let reply = try await send(arguments)
        if case .error(let message) = reply { throw RedisError.server(message) }
        return reply
    }

    /// Finishes queued commands and closes every connection. Later commands fail with ``RedisError/shutdown``.
    public func shutdown() async {
        await loopConnections.closeAll()
        for pipeline in pipelines { await pipeline.shutdown() }
        await cluster?.shutdown()
    }
}

extension RedisClient: Service {
    /// Waits for graceful shutdown, then closes the connections.
    public func run() async throws {
        try? await gracefulShutdown()
        await shutdown()
    }
}
