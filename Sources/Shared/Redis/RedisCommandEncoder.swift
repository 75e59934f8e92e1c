/// Encodes commands in RESP, the Redis wire format.
///
/// Encoding happens on the caller's task, so the connection thread only copies bytes to the socket.
public enum RedisCommandEncoder {
    /// `*<n>\r\n` followed by `$<len>\r\n<arg>\r\n` for each argument.
    public static func encode(_ arguments: [String]) -> [UInt8] {
        var size = 16
        for argument in arguments { size += argument.utf8.count + 16 }
        var out = [UInt8]()
        out.reserveCapacity(size)
        appendArrayHeader(count: arguments.count, to: &out)
        for argument in arguments { appendBulk(argument, to: &out) }
        return out
    }

    /// `*<count>\r\n`: an array of `count` arguments follows.
    static func appendArrayHeader(count: Int, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "*"))
        appendDecimal(count, to: &out)
        out.append(13)
        out.append(10)
    }

    /// `$<len>\r\n<argument>\r\n`.
    static func appendBulk(_ argument: String, to out: inout [UInt8]) {
        appendBulk(argument, "", to: &out)
    }

    /// `$<len>\r\n<prefix><rest>\r\n`: one argument written from two parts, without joining them first.
    static func appendBulk(_ prefix: String, _ rest: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "$"))
        appendDecimal(prefix.utf8.count + rest.utf8.count, to: &out)
        out.append(13)
        out.append(10)
        out.append(contentsOf: prefix.utf8)
        out.append(contentsOf: rest.utf8)
        out.append(13)
        out.append(10)
    }

    private static func appendDecimal(_ value: Int, to out: inout [UInt8]) {
        if value >= 10 { appendDecimal(value / 10, to: &out) }
        out.append(UInt8(48 + value % 10))
    }
}
