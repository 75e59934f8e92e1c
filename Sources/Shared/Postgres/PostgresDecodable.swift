/// A Swift value read from a column in PostgreSQL's text output format.
public protocol PostgresDecodable: Sendable {
    /// Reads the value; `text` is `nil` for SQL NULL.
    static func decode(_ text: String?, column: String) throws(PostgresDecodingError) -> Self
}

/// A column that did not hold what the caller asked for.
public struct PostgresDecodingError: Error, Sendable, Equatable, CustomStringConvertible {
    public let column: String
    public let expected: String
    public let found: String?

    public var description: String {
        "column \(column): expected \(expected), found \(found.map { "'\($0)'" } ?? "NULL")"
    }
}

/// Values written as text and read back with a failable initializer.
public protocol PostgresTextDecodable: PostgresDecodable {
    init?(postgresText: String)
}

extension PostgresTextDecodable {
    public static func decode(_ text: String?, column: String) throws(PostgresDecodingError) -> Self {
        guard let text, let value = Self(postgresText: text) else {
            throw PostgresDecodingError(column: column, expected: "\(Self.self)", found: text)
        }
        return value
    }
}

extension String: PostgresTextDecodable { public init?(postgresText: String) { self = postgresText } }
extension Int: PostgresTextDecodable { public init?(postgresText: String) { self.init(postgresText) } }
extension Int64: PostgresTextDecodable { public init?(postgresText: String) { self.init(postgresText) } }
extension Double: PostgresTextDecodable { public init?(postgresText: String) { self.init(postgresText) } }
extension Bool: PostgresTextDecodable {
    public init?(postgresText: String) {
        switch postgresText {
        case "t": self = true
        case "f": self = false
        default: return nil
        }
    }
}

extension Optional: PostgresDecodable where Wrapped: PostgresDecodable {
    public static func decode(_ text: String?, column: String) throws(PostgresDecodingError) -> Self {
        guard let text else { return nil }
        return try Wrapped.decode(text, column: column)
    }
}

extension PostgresResult {
    /// The rows as tuples of the given column types, in column order:
    /// `try result.decode((DeviceID, String?, Int64).self)`; a single column: `decode(String.self)`.
    /// - Throws: ``PostgresDecodingError`` when a column does not hold its type (NULL into a
    ///   non-optional included), or when the row has fewer columns than asked for.
    public func decode<each Column: PostgresDecodable>(_ types: (repeat each Column).Type) throws(PostgresDecodingError) -> [(repeat each Column)] {
        var decoded: [(repeat each Column)] = []
        decoded.reserveCapacity(rows.count)
        for row in rows {
            let cursor = ColumnCursor(row: row, columns: columns)
            decoded.append((repeat try cursor.next((each Column).self)))
        }
        return decoded
    }

    /// The first row decoded, or `nil` when there is none.
    public func first<each Column: PostgresDecodable>(_ types: (repeat each Column).Type) throws(PostgresDecodingError) -> (repeat each Column)? {
        guard let row = rows.first else { return nil }
        let cursor = ColumnCursor(row: row, columns: columns)
        return (repeat try cursor.next((each Column).self))
    }
}

/// Reads a row's columns left to right.
private final class ColumnCursor {
    let row: [String?]
    let columns: [String]
    var index = 0

    init(row: [String?], columns: [String]) {
        self.row = row
        self.columns = columns
    }

    func next<Column: PostgresDecodable>(_ type: Column.Type) throws(PostgresDecodingError) -> Column {
        defer { index += 1 }
        guard index < row.count else {
            throw PostgresDecodingError(column: "#\(index + 1)", expected: "\(Column.self)", found: "no such column")
        }
        return try Column.decode(row[index], column: index < columns.count ? columns[index] : "#\(index + 1)")
    }
}
