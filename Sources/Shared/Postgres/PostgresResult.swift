/// Rows of a query, copied out of libpq as text (PostgreSQL's text output format).
public struct PostgresResult: Sendable {
    public let columns: [String]
    public let rows: [[String?]]
    /// Rows touched by INSERT/UPDATE/DELETE (`PQcmdTuples`), 0 otherwise.
    public let affectedRows: Int

    public init(columns: [String], rows: [[String?]], affectedRows: Int) {
        self.columns = columns
        self.rows = rows
        self.affectedRows = affectedRows
    }

    /// The first column of the first row.
    public var scalar: String? { rows.first?.first ?? nil }
}
