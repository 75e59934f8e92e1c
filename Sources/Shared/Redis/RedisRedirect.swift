/// A cluster redirection: the error reply `MOVED <slot> <host:port>` (the slot lives elsewhere
/// now) or `ASK <slot> <host:port>` (this one command goes there, preceded by `ASKING`).
struct RedisRedirect: Equatable {
    enum Kind { case moved, ask }

    var kind: Kind
    var slot: Int
    var node: RedisClusterMap.Node

    /// Parses an error reply; `nil` when it is not a redirection.
    init?(_ message: String, from current: RedisClusterMap.Node) {
        let parts = message.split(separator: " ")
        guard parts.count == 3, let slot = Int(parts[1]), (0..<RedisSlot.count).contains(slot),
            let node = RedisClusterMap.Node(parts[2], fallbackHost: current.host)
        else { return nil }
        switch parts[0] {
        case "MOVED": kind = .moved
        case "ASK": kind = .ask
        default: return nil
        }
        self.slot = slot
        self.node = node
    }
}
