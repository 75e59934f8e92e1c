/// A Redis reply, copied out of hiredis so no C memory outlives the call that produced it.
public enum RedisValue: Sendable, Equatable {
    case null
    /// A bulk or status string.
    case string(String)
    case integer(Int64)
    case array([RedisValue])
    /// An error reply (`-ERR …`, `-NOSCRIPT …`); a reply, not a transport failure.
    case error(String)

    public var string: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    public var integer: Int64? {
        switch self {
        case .integer(let value): value
        case .string(let value): Int64(value)
        default: nil
        }
    }

    public var array: [RedisValue]? {
        if case .array(let value) = self { return value }
        return nil
    }
}
