import Foundation
import Logging
import RedisAdapter

/// A small Redis Cluster on loopback for tests: `count` primaries (no replicas), the slots split
/// evenly, joined with `CLUSTER MEET` and `CLUSTER ADDSLOTSRANGE`; ready when every node reports
/// `cluster_state:ok`.
final class RedisClusterNodes: Sendable {
    let nodes: [RedisServer]

    var seeds: [RedisClusterMap.Node] { nodes.map { .init(host: "127.0.0.1", port: $0.port) } }

    static func start(primaries count: Int = 3) async throws -> RedisClusterNodes {
        var nodes: [RedisServer] = []
        for _ in 0..<count {
            nodes.append(
                try await RedisServer.start(extraArguments: [
                    "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "1500",
                    // as deploy/redis.conf: a dead primary stops only its own slots
                    "--cluster-require-full-coverage", "no",
                ]))
        }
        let cluster = RedisClusterNodes(nodes: nodes)
        let per = RedisSlot.count / count
        for (index, node) in nodes.enumerated() {
            let first = index * per
            let last = index == count - 1 ? RedisSlot.count - 1 : first + per - 1
            try await cluster.direct(node, ["CLUSTER", "ADDSLOTSRANGE", String(first), String(last)])
            if index > 0 { try await cluster.direct(nodes[0], ["CLUSTER", "MEET", "127.0.0.1", String(node.port)]) }
        }
        let ready = try await eventually(.seconds(20)) {
            for node in nodes {
                let info = try await cluster.direct(node, ["CLUSTER", "INFO"]).string ?? ""
                // with full coverage off a node is `ok` before it has learnt the others' slots, and
                // answers their keys `CLUSTERDOWN Hash slot not served` instead of `MOVED` until then
                guard info.contains("cluster_state:ok"), info.contains("cluster_known_nodes:\(count)"),
                    info.contains("cluster_slots_assigned:\(RedisSlot.count)")
                else { return false }
            }
            return true
        }
        guard ready else { throw TestFailure("the test cluster did not reach cluster_state:ok") }
        return cluster
    }

    private init(nodes: [RedisServer]) {
        self.nodes = nodes
    }

    /// A command sent straight to one node (no routing); error replies (`MOVED`, `ASK`) are returned.
    @discardableResult
    func direct(_ node: RedisServer, _ arguments: [String]) async throws -> RedisValue {
        let client = node.client()
        do {
            let reply = try await client.send(arguments)
            await client.shutdown()
            return reply
        } catch {
            await client.shutdown()
            throw error
        }
    }

    /// The node's cluster id.
    func id(of node: RedisServer) async throws -> String {
        try await direct(node, ["CLUSTER", "MYID"]).string ?? ""
    }

    /// The node serving `slot`.
    func owner(of slot: Int) async throws -> RedisServer {
        for node in nodes {
            let ranges = try await direct(node, ["CLUSTER", "SLOTS"]).array ?? []
            for range in ranges {
                guard let fields = range.array, let start = fields[0].integer, let end = fields[1].integer,
                    let port = fields[2].array?[1].integer, (start...end).contains(Int64(slot))
                else { continue }
                if let owner = nodes.first(where: { $0.port == Int(port) }) { return owner }
            }
        }
        throw TestFailure("no node serves slot \(slot)")
    }

    /// A routing client of the kind the executables build with `REDIS_CLUSTER_NODES`.
    func client(timeout: Duration = .seconds(1)) -> RedisClient {
        RedisClient(
            configuration: .init(endpoint: RedisEndpoint(), timeout: timeout, connections: 1, clusterNodes: seeds),
            logger: Logger(label: "test-cluster"))
    }
}
