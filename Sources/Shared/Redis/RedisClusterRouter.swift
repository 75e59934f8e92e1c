import Logging
import NIOCore
import Synchronization

/// Cluster mode of ``RedisClient``: sends each command to the primary of its key's slot, over
/// that node's pipelined connections, and keeps the slot map current.
///
/// The map is loaded from the seed nodes on first use and reloaded (at most every
/// ``minimumRefreshInterval``, in the background) after a `MOVED`, a `CLUSTERDOWN`, or a
/// connection failure: a failover shows up as a node that no longer answers, and the next map names
/// its promoted replica. `ASK` sends the one command on with `ASKING`; `TRYAGAIN` (a multi-key
/// command during a slot migration) is retried a few times over ~100 ms before it is returned.
final class RedisClusterRouter: Sendable {
    private struct State {
        var map: RedisClusterMap?
        var pipelines: [RedisClusterMap.Node: [RedisPipeline]] = [:]
        var refreshing = false
        var lastRefresh: ContinuousClock.Instant?
        var stopping = false
    }

    /// How often a failing cluster may make the client reload the slot map.
    static let minimumRefreshInterval: Duration = .milliseconds(100)
    /// Redirections and `TRYAGAIN` retries one command may take.
    static let maximumRedirects = 5

    private let seeds: [RedisClusterMap.Node]
    private let endpoint: RedisEndpoint
    private let timeout: Duration
    private let reconnectBackoff: Duration
    private let connectionsPerNode: Int
    private let loopConnections: RedisLoopConnections
    private let logger: Logger
    private let state = Mutex(State())
    private let next = Atomic<Int>(0)

    init(seeds: [RedisClusterMap.Node], configuration: RedisClient.Configuration, loopConnections: RedisLoopConnections, logger: Logger) {
        self.seeds = seeds
        self.loopConnections = loopConnections
        self.endpoint = configuration.endpoint
        self.timeout = configuration.timeout
        self.reconnectBackoff = configuration.reconnectBackoff
        self.connectionsPerNode = configuration.connections
        self.logger = logger
    }

    /// Sends one RESP-encoded command to the primary of `key`'s slot (any primary when `key` is `nil`),
    /// following redirections.
    func send(_ command: [UInt8], key: String?) async throws -> RedisValue {
        let slot = key.map(RedisSlot.of)
        var node = try await primary(of: slot)
        var asking = false
        var attempt = 0
        while true {
            let reply: RedisValue
            do {
                reply = try await pipeline(for: node).send(command, asking: asking)
            } catch {
                refreshSoon()
                throw error
            }
            guard case .error(let message) = reply, attempt < Self.maximumRedirects else { return reply }
            attempt += 1
            if let redirect = RedisRedirect(message, from: node) {
                if redirect.kind == .moved {
                    state.withLock { $0.map?.assign(redirect.slot, to: redirect.node) }
                    refreshSoon()
                }
                node = redirect.node
                asking = redirect.kind == .ask
            } else if message.hasPrefix("TRYAGAIN") {
                // keys of one slot split between two nodes mid-migration: wait for the rest to move
                try await Task.sleep(for: .milliseconds(10 * attempt))
                node = try await primary(of: slot)
                asking = false
            } else {
                if message.hasPrefix("CLUSTERDOWN") { refreshSoon() }
                return reply
            }
        }
    }

    /// ``send(_:key:)`` for a caller on an event loop: `completion` gets the reply on the node
    /// connection's thread. With the map loaded, the command goes straight to its slot's primary;
    /// a redirection or `TRYAGAIN` (the command did not run) sends it again through
    /// ``send(_:key:)`` in a task, as does a command without a key or a map not loaded yet.
    func send(_ command: [UInt8], key: String?, completion: @escaping @Sendable (Result<RedisValue, any Error>) -> Void) {
        let slot = key.map(RedisSlot.of)
        guard let slot, let node = state.withLock({ $0.map?.primary(of: slot) }), let pipeline = try? pipeline(for: node) else {
            resend(command, key: key, completion: completion)
            return
        }
        pipeline.send(command) { [self] result in
            guard redirected(result, from: node) else { return completion(result) }
            resend(command, key: key, completion: completion)
        }
    }

    /// ``send(_:key:completion:)`` from an event loop, over the loop's own connection to the slot's
    /// primary (``RedisLoopConnection``); `completion` runs on the loop. Redirections go the same
    /// way as there (a task), and come back to the loop.
    func send(
        _ command: [UInt8], key: String?, on eventLoop: any EventLoop,
        completion: @escaping @Sendable (Result<RedisValue, any Error>) -> Void
    ) {
        let onLoop: @Sendable (Result<RedisValue, any Error>) -> Void = { result in eventLoop.execute { completion(result) } }
        let slot = key.map(RedisSlot.of)
        guard let slot, let node = state.withLock({ $0.map?.primary(of: slot) }),
            let connection = loopConnections.connection(to: endpoint(of: node), on: eventLoop)
        else {
            resend(command, key: key, completion: onLoop)
            return
        }
        connection.send(command) { [self] result in
            guard redirected(result, from: node) else { return completion(result) }
            resend(command, key: key, completion: onLoop)
        }
    }

    /// Whether a fast-path reply from `node` must be sent again through ``send(_:key:)`` (a
    /// redirection or `TRYAGAIN`: the command did not run); notes what calls for a new map.
    private func redirected(_ result: Result<RedisValue, any Error>, from node: RedisClusterMap.Node) -> Bool {
        switch result {
        case .success(.error(let message)):
            if RedisRedirect(message, from: node) != nil || message.hasPrefix("TRYAGAIN") { return true }
            if message.hasPrefix("CLUSTERDOWN") { refreshSoon() }
        case .failure:
            refreshSoon()
        case .success:
            break
        }
        return false
    }

    private func resend(_ command: [UInt8], key: String?, completion: @escaping @Sendable (Result<RedisValue, any Error>) -> Void) {
        Task {
            do { completion(.success(try await send(command, key: key))) } catch { completion(.failure(error)) }
        }
    }

    /// Sends one command to every primary of the current map, in map order: each one's reply or failure.
    func tryEachPrimary(_ command: [UInt8]) async throws -> [Result<RedisValue, any Error>] {
        let primaries = try await currentMap().primaries
        var replies: [Result<RedisValue, any Error>] = []
        for node in primaries {
            do {
                replies.append(.success(try await pipeline(for: node).send(command)))
            } catch {
                refreshSoon()
                replies.append(.failure(error))
            }
        }
        return replies
    }

    /// The slot map in use, loaded first if there is none yet.
    func currentMap() async throws -> RedisClusterMap {
        if let map = state.withLock({ $0.map }) { return map }
        let map = try await loadMap()
        install(map)
        return map
    }

    private func primary(of slot: Int?) async throws -> RedisClusterMap.Node {
        let map = try await currentMap()
        if let slot {
            guard let node = map.primary(of: slot) else {
                refreshSoon()
                throw RedisError.server("CLUSTERDOWN no primary serves slot \(slot) in the client's map")
            }
            return node
        }
        guard !map.primaries.isEmpty else { throw RedisError.server("CLUSTERDOWN the cluster map names no primary") }
        return map.primaries[next.wrappingAdd(1, ordering: .relaxed).oldValue % map.primaries.count]
    }

    private func pipeline(for node: RedisClusterMap.Node) throws(RedisError) -> RedisPipeline {
        let index = next.wrappingAdd(1, ordering: .relaxed).oldValue
        return try state.withLock { state throws(RedisError) in
            if state.stopping { throw .shutdown }
            if let pipelines = state.pipelines[node] { return pipelines[index % pipelines.count] }
            let pipelines = (0..<connectionsPerNode).map { connection in
                RedisPipeline(
                    endpoint: endpoint(of: node), timeout: timeout, reconnectBackoff: reconnectBackoff,
                    name: "redis-\(node.port)-\(connection)", logger: logger)
            }
            state.pipelines[node] = pipelines
            return pipelines[index % pipelines.count]
        }
    }

    /// The node's address with the client's credentials.
    private func endpoint(of node: RedisClusterMap.Node) -> RedisEndpoint {
        var nodeEndpoint = endpoint
        nodeEndpoint.host = node.host
        nodeEndpoint.port = node.port
        return nodeEndpoint
    }

    /// Starts a background reload of the map unless one runs or the last was too recent.
    func refreshSoon() {
        let start = state.withLock { state in
            if state.refreshing || state.stopping { return false }
            if let last = state.lastRefresh, ContinuousClock.now - last < Self.minimumRefreshInterval { return false }
            state.refreshing = true
            return true
        }
        guard start else { return }
        Task {
            let map = try? await loadMap()
            if let map { install(map) }
            state.withLock { state in
                state.refreshing = false
                state.lastRefresh = .now
            }
        }
    }

    /// `CLUSTER SLOTS` from the known primaries, then the seeds, until one answers with a map that serves slots.
    private func loadMap() async throws -> RedisClusterMap {
        var candidates = state.withLock { $0.map?.primaries ?? [] }
        for seed in seeds where !candidates.contains(seed) { candidates.append(seed) }
        var lastError: any Error = RedisError.unavailable("no Redis Cluster seed node answered")
        let command = RedisCommandEncoder.encode(["CLUSTER", "SLOTS"])
        for node in candidates {
            do {
                let reply = try await pipeline(for: node).send(command)
                if case .error(let message) = reply {
                    lastError = RedisError.server(message)
                    continue
                }
                let map = try RedisClusterMap(clusterSlots: reply, answeredBy: node)
                if map.coveredSlots > 0 { return map }
                lastError = RedisError.server("CLUSTERDOWN \(node) serves no slots")
            } catch {
                lastError = error
            }
        }
        throw lastError
    }

    private func install(_ map: RedisClusterMap) {
        let previous = state.withLock { state in
            defer { state.map = map }
            return state.map
        }
        if previous?.primaries != map.primaries || previous?.coveredSlots != map.coveredSlots {
            logger.info(
                "Redis Cluster map loaded",
                metadata: [
                    "primaries": "\(map.primaries.map(\.description).joined(separator: ","))",
                    "slots": "\(map.coveredSlots)",
                ])
        }
    }

    /// Finishes queued commands and closes every node's connections.
    func shutdown() async {
        let pipelines = state.withLock { state in
            state.stopping = true
            return state.pipelines.values.flatMap { $0 }
        }
        for pipeline in pipelines { await pipeline.shutdown() }
    }
}
