/// A statement and its parameters, written as one interpolated string in the spirit of
/// postgres-nio's `PostgresQuery`: every interpolated value becomes a bind (`$1`, `$2`, …), never
/// SQL text, so values cannot inject SQL.
///
/// ```swift
/// let query: PostgresQuery = "SELECT name FROM devices WHERE id = \(id) AND status = \(status)"
/// // sql: "SELECT name FROM devices WHERE id = $1 AND status = $2", binds: [id, status]
/// ```
/// Casts go in the text after the bind: `"\(ids)::uuid[]"`.
public struct PostgresQuery: Sendable, Equatable, ExpressibleByStringInterpolation {
    /// The SQL text with `$n` placeholders.
    public var sql: String
    /// The parameters in PostgreSQL's text format; `nil` is SQL NULL.
    public var binds: [String?]

    public init(stringLiteral value: String) {
        self.sql = value
        self.binds = []
    }

    /// SQL text built at run time with `$n` placeholders, and its binds. Never put values in `sql`.
    public init(unsafeSQL sql: String, binds: [String?] = []) {
        self.sql = sql
        self.binds = binds
    }

    public init(stringInterpolation: StringInterpolation) {
        self.sql = stringInterpolation.sql
        self.binds = stringInterpolation.binds
    }

    public struct StringInterpolation: StringInterpolationProtocol {
        var sql = ""
        var binds: [String?] = []

        public init(literalCapacity: Int, interpolationCount: Int) {
            sql.reserveCapacity(literalCapacity + interpolationCount * 3)
            binds.reserveCapacity(interpolationCount)
        }

        public mutating func appendLiteral(_ literal: String) { sql += literal }

        /// A value as a bind.
        public mutating func appendInterpolation(_ value: some PostgresEncodable) {
            binds.append(value.postgresText)
            sql += "$\(binds.count)"
        }

        /// SQL text the program itself wrote (a column list), never a value: it is not a bind.
        public mutating func appendInterpolation(columns text: StaticString) { sql += text.description }

        /// An optional value as a bind; `nil` is NULL.
        public mutating func appendInterpolation(_ value: (some PostgresEncodable)?) {
            binds.append(value?.postgresText)
            sql += "$\(binds.count)"
        }
    }
}

/// A Swift value PostgreSQL can take as a text-format parameter.
public protocol PostgresEncodable: Sendable {
    /// The value in PostgreSQL's text input format.
    var postgresText: String { get }
}

extension String: PostgresEncodable { public var postgresText: String { self } }
extension Int: PostgresEncodable { public var postgresText: String { String(self) } }
extension Int64: PostgresEncodable { public var postgresText: String { String(self) } }
extension Double: PostgresEncodable { public var postgresText: String { String(self) } }
extension Bool: PostgresEncodable { public var postgresText: String { self ? "t" : "f" } }

extension Array: PostgresEncodable where Element: PostgresEncodable {
    /// An array literal, `{a,b}`: an element is quoted (`"` and `\` escaped) only when it needs it —
    /// empty, `NULL`, or holding a space, `{`, `}`, `,`, `"` or `\`. Ids and numbers go bare (the
    /// history writer sends 5,000 UUIDs a batch).
    public var postgresText: String {
        var text = "{"
        for (index, element) in enumerated() {
            if index > 0 { text += "," }
            let value = element.postgresText
            guard Self.needsQuotes(value) else {
                text += value
                continue
            }
            text += "\""
            for character in value {
                if character == "\"" || character == "\\" { text += "\\" }
                text.append(character)
            }
            text += "\""
        }
        return text + "}"
    }

    /// Whether `value` must be quoted in an array literal: empty, `NULL` in any case, or holding
    /// whitespace, a delimiter, a brace, a quote or a backslash. On the bytes, no copy (the history
    /// writer's write-behind quotes a batch's ids through here: an upper-cased copy of each was
    /// ~2.5% of the monitor's CPU).
    private static func needsQuotes(_ value: String) -> Bool {
        var value = value
        return value.withUTF8 { bytes in
            if bytes.isEmpty { return true }
            if bytes.count == 4, zip(bytes, "null".utf8).allSatisfy({ $0 | 0x20 == $1 }) { return true }
            return bytes.contains {
                $0 <= 32 || $0 == UInt8(ascii: "{") || $0 == UInt8(ascii: "}") || $0 == UInt8(ascii: ",") || $0 == UInt8(ascii: "\"")
                    || $0 == UInt8(ascii: "\\")
            }
        }
    }
}
