/// Minimal JSON text building for hot paths and for embedding JSON that is already serialized
/// (commands popped from Redis are JSON strings and go into responses as they are).
public enum JSONText {
    /// `value` as a JSON string literal, quotes included.
    public static func quoted(_ value: String) -> String {
        // Fast path (ids, times, versions): nothing to escape, one allocation.
        if !value.utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) {
            return "\"" + value + "\""
        }
        var out = "\""
        out.reserveCapacity(value.utf8.count + 2)
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
        return out
    }

    /// A JSON number for a finite double, written as an integer when it is one (`64`, not `64.0`).
    public static func number(_ value: Double) -> String {
        precondition(value.isFinite, "JSON has no representation for \(value)")
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return "\(value)"
    }

    /// An object written member by member, in insertion order.
    public struct Object {
        private var members: [String] = []

        public init() {}

        public mutating func add(_ key: String, string value: String) { members.append(quoted(key) + ":" + quoted(value)) }
        public mutating func add(_ key: String, number value: Double) { members.append(quoted(key) + ":" + JSONText.number(value)) }
        public mutating func add(_ key: String, bool value: Bool) { members.append(quoted(key) + ":" + (value ? "true" : "false")) }
        /// Adds a member whose value is already valid JSON text.
        public mutating func add(_ key: String, raw value: String) { members.append(quoted(key) + ":" + value) }

        public var text: String { "{" + members.joined(separator: ",") + "}" }
    }
}
