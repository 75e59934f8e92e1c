import PostgresAdapter

/// ``LeaderLock`` as a PostgreSQL session-level advisory lock held on a dedicated connection:
/// the lock lives exactly as long as the session, and the applier writes through that session.
actor PostgresLeaderLock: LeaderLock {
    static let key: Int64 = 7_220_001

    let url: String
    let applicationName: String
    private var connection: PostgresConnection?

    init(url: String, applicationName: String) {
        self.url = url
        self.applicationName = applicationName
    }

    func tryAcquire() async throws -> Leadership.Session? {
        let session = try await session()
        guard let taken = try await session.query("SELECT pg_try_advisory_lock(\(Self.key))").first(Bool.self), taken else { return nil }
        let pid = try await session.query("SELECT pg_backend_pid()").first(Int.self) ?? 0
        return Leadership.Session(connection: session, backendPID: pid)
    }

    func verify() async throws {
        try await session().query("SELECT 1")
    }

    func release() async throws {
        try await connection?.query("SELECT pg_advisory_unlock(\(Self.key))")
    }

    func close() async {
        await connection?.close()
        connection = nil
    }

    private func session() async throws -> PostgresConnection {
        if let connection, !connection.isBroken { return connection }
        let fresh = try await PostgresConnection.connect(url: url, applicationName: applicationName)
        connection = fresh
        return fresh
    }
}
