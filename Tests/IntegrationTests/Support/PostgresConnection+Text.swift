import PostgresAdapter

/// Tests inspect and arrange rows with plain SQL text and positional parameters.
extension PostgresConnection {
    @discardableResult
    func query(_ sql: String, _ parameters: [String?] = []) async throws -> PostgresResult {
        try await query(PostgresQuery(unsafeSQL: sql, binds: parameters))
    }
}

extension PostgresPool {
    @discardableResult
    func query(_ sql: String, _ parameters: [String?] = []) async throws -> PostgresResult {
        try await query(PostgresQuery(unsafeSQL: sql, binds: parameters))
    }
}
