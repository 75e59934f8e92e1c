/// Minimal JSON text building for hot paths and for embedding JSON that is already serialized
/// (commands popped from Redis are JSON strings and go into responses as they are).
public enum JSONText {
    /// `value` as a JSON string literal, quotes included.
    public static func quoted(_ value: String) -> String {
        var out = ""
        appendQuoted(value, to: &out)
        return out
    }

    /// Appends `value` as a JSON string literal, quotes included.
    public static func appendQuoted(_ value: String, to out: inout String) {
        // Fast path (ids, times, versions): nothing to escape, appended as it is.
        if !value.utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) {
            out += "\""
            out += value
            out += "\""
            return
        }
        out.reserveCapacity(out.utf8.count + value.utf8.count + 8)
        out += "\""
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
    }

    /// A JSON number for a finite double, written as an integer when it is one (`64`, not `64.0`).
    public static func number(_ value: Double) -> String {
        precondition(value.isFinite, "JSON has no representation for \(value)")
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return "\(value)"
    }

    /// An object written member by member, in insertion order, into one growing string.
    public struct Object {
        private var body = "{"

        public init(capacity: Int = 64) {
            body.reserveCapacity(capacity)
        }

        public mutating func add(_ key: String, string value: String) {
            startMember(key)
            appendQuoted(value, to: &body)
        }

        public mutating func add(_ key: String, number value: Double) {
            startMember(key)
            body += JSONText.number(value)
        }

        public mutating func add(_ key: String, bool value: Bool) {
            startMember(key)
            body += value ? "true" : "false"
        }

        /// Adds a member whose value is already valid JSON text.
        public mutating func add(_ key: String, raw value: String) {
            startMember(key)
            body += value
        }

        public var text: String { body + "}" }

        private mutating func startMember(_ key: String) {
            if body.utf8.count > 1 { body += "," }
            appendQuoted(key, to: &body)
            body += ":"
        }
    }
}
