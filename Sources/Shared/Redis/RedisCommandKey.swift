/// Which argument of a command names the key that decides its cluster slot.
///
/// Covers the commands this project sends; every multi-key command here keeps its keys in one slot
/// (the `{bucket}` hash tag), so the first key decides.
enum RedisCommandKey {
    /// The routing key of `arguments`, or `nil` for a command without keys (`PING`, `INFO`, `TIME`,
    /// `SCRIPT`, `CLUSTER`, an `EVALSHA` with no keys), which any primary can answer.
    static func of(_ arguments: [String]) -> String? {
        guard let name = arguments.first, arguments.count > 1 else { return nil }
        switch name.uppercased() {
        case "EVALSHA", "EVAL", "EVALSHA_RO", "EVAL_RO", "FCALL", "FCALL_RO":
            guard arguments.count > 3, let keys = Int(arguments[2]), keys > 0 else { return nil }
            return arguments[3]
        case "XREADGROUP", "XREAD":
            guard let streams = arguments.firstIndex(where: { $0.uppercased() == "STREAMS" }), streams + 1 < arguments.count else {
                return nil
            }
            return arguments[streams + 1]
        case "XGROUP", "XINFO":
            return arguments.count > 2 ? arguments[2] : nil
        case "PING", "INFO", "TIME", "SCRIPT", "CLUSTER", "ASKING", "AUTH", "SELECT", "DBSIZE", "FLUSHALL", "FLUSHDB", "KEYS",
            "SCAN", "CONFIG", "CLIENT", "WAIT", "READONLY", "ROLE", "HELLO", "COMMAND", "ECHO", "LASTSAVE", "BGREWRITEAOF":
            return nil
        default:
            return arguments[1]
        }
    }
}
