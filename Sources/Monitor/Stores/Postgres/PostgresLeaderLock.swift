import PostgresAdapter

/// ``LeaderLock`` as a PostgreSQL session-level advisory lock held on a dedicated connection:
/// the lock lives exactly as long as the session. Writes on other sessions are fenced against it
/// (`assert_leader`, `apply_transitions_fenced`).
actor PostgresLeaderLock: LeaderLock {
    static let key: Int64 = 7_220_001
    /// Taken shared by every fenced transition write for its transaction; taken exclusively by a
    /// new leader once (migration 8).
    static let writeFenceKey: Int64 = 7_220_002

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
        // an old leader's transition writes already past their leader check finish before this
        // instance writes anything; every later one fails its check (the lock is ours now)
        try await session.query("SELECT pg_advisory_xact_lock(\(Self.writeFenceKey))")
        let pid = try await session.query("SELECT pg_backend_pid()").first(Int.self) ?? 0
        return Leadership.Session(backendPID: pid)
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
