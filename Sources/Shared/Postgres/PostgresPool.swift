import Synchronization

/// A few PostgreSQL connections shared round-robin by request handlers; a broken connection is
/// replaced on its next use. Each connection runs one statement at a time (its own queue).
public final class PostgresPool: Sendable {
    private let url: String
    private let applicationName: String
    private let size: Int
    private let slots: Mutex<[PostgresConnection?]>
    private let next = Atomic<Int>(0)

    public init(url: String, applicationName: String, size: Int = 4) {
        self.url = url
        self.applicationName = applicationName
        self.size = max(1, size)
        self.slots = Mutex([PostgresConnection?](repeating: nil, count: max(1, size)))
    }

    /// Runs one statement on the next connection (connecting or reconnecting it first if needed).
    @discardableResult
    public func query(_ query: PostgresQuery) async throws -> PostgresResult {
        try await nextConnection().query(query)
    }

    /// Runs `COPY … FROM STDIN` on the next connection (see ``PostgresConnection/copyIn(_:data:)``).
    @discardableResult
    public func copyIn(_ sql: String, data: [UInt8]) async throws -> Int {
        try await nextConnection().copyIn(sql, data: data)
    }

    /// The next connection round-robin, connected or reconnected first if needed.
    private func nextConnection() async throws -> PostgresConnection {
        let slot = next.wrappingAdd(1, ordering: .relaxed).oldValue % size
        let existing = slots.withLock { slots -> PostgresConnection? in
            if let current = slots[slot], current.isBroken { slots[slot] = nil }
            return slots[slot]
        }
        let connection: PostgresConnection
        if let existing {
            connection = existing
        } else {
            connection = try await PostgresConnection.connect(url: url, applicationName: applicationName)
            slots.withLock { $0[slot] = connection }
        }
        return connection
    }

    /// Closes every connection.
    public func close() async {
        let connections = slots.withLock { slots -> [PostgresConnection?] in
            defer { slots = slots.map { _ in nil } }
            return slots
        }
        for connection in connections { await connection?.close() }
    }
}
