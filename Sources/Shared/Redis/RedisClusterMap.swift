/// Which primary serves each of the 16,384 slots of a Redis Cluster, from `CLUSTER SLOTS`.
///
/// A value: the client swaps in a new map after a refresh, and tests build maps without a server.
public struct RedisClusterMap: Sendable, Equatable {
    /// A node's address (`host:port`), as the cluster announces it.
    public struct Node: Sendable, Hashable, CustomStringConvertible {
        public var host: String
        public var port: Int

        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }

        /// Parses `host:port` (the host may be empty in a redirect: then `fallbackHost`).
        public init?(_ text: some StringProtocol, fallbackHost: String? = nil) {
            guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (1...65535).contains(port)
            else { return nil }
            var host = String(text[..<colon])
            if host.isEmpty, let fallbackHost { host = fallbackHost }
            guard !host.isEmpty else { return nil }
            self.init(host: host, port: port)
        }

        public var description: String { "\(host):\(port)" }
    }

    /// The primaries, in the order `CLUSTER SLOTS` first named them.
    public private(set) var primaries: [Node]
    /// For each slot, the index of its primary in ``primaries``; `-1` when no node serves it.
    private var owner: [Int16]

    /// A map in which no slot is served.
    public init() {
        primaries = []
        owner = Array(repeating: -1, count: RedisSlot.count)
    }

    /// The primary serving `slot`, or `nil` when the map has none (the cluster is down for that slot).
    public func primary(of slot: Int) -> Node? {
        let index = owner[slot]
        return index < 0 ? nil : primaries[Int(index)]
    }

    /// How many slots have a primary.
    public var coveredSlots: Int { owner.reduce(0) { $0 + ($1 < 0 ? 0 : 1) } }

    /// The slots `node` serves, as ranges.
    public func slots(of node: Node) -> [ClosedRange<Int>] {
        guard let index = primaries.firstIndex(of: node).map(Int16.init) else { return [] }
        var ranges: [ClosedRange<Int>] = []
        var start: Int?
        for slot in 0...RedisSlot.count {
            let served = slot < RedisSlot.count && owner[slot] == index
            if served, start == nil { start = slot }
            if !served, let first = start {
                ranges.append(first...(slot - 1))
                start = nil
            }
        }
        return ranges
    }

    /// Records that `slot` is now served by `node` (after a `MOVED`).
    public mutating func assign(_ slot: Int, to node: Node) {
        owner[slot] = Int16(index(of: node))
    }

    private mutating func index(of node: Node) -> Int {
        if let index = primaries.firstIndex(of: node) { return index }
        primaries.append(node)
        return primaries.count - 1
    }

    /// Reads a `CLUSTER SLOTS` reply: `[[start, end, [host, port, id, …], replica…], …]`.
    /// - Parameter answeredBy: the node that replied; its host stands in for an empty announced host.
    public init(clusterSlots reply: RedisValue, answeredBy: Node) throws(RedisError) {
        self.init()
        guard let ranges = reply.array else { throw .unexpectedReply("CLUSTER SLOTS returned \(reply)") }
        for range in ranges {
            guard let fields = range.array, fields.count >= 3, let start = fields[0].integer, let end = fields[1].integer,
                let primary = fields[2].array, primary.count >= 2, let host = primary[0].string, let port = primary[1].integer,
                0 <= start, start <= end, end < RedisSlot.count
            else { throw .unexpectedReply("CLUSTER SLOTS entry \(range)") }
            let node = Node(host: host.isEmpty || host == "?" ? answeredBy.host : host, port: Int(port))
            let index = Int16(index(of: node))
            for slot in Int(start)...Int(end) { owner[slot] = index }
        }
    }
}
