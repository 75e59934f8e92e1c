/// Why a PostgreSQL call failed.
public enum PostgresError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Could not connect (bad URL, server down, authentication).
    case connectionFailed(String)
    /// The connection broke; open a new one.
    case connectionLost(String)
    /// The server refused the statement; `sqlState` is the five-character SQLSTATE code.
    case queryFailed(sqlState: String?, message: String)
    /// The connection has been closed by this process.
    case closed

    public var description: String {
        switch self {
        case .connectionFailed(let why): "PostgreSQL connection failed: \(why)"
        case .connectionLost(let why): "PostgreSQL connection lost: \(why)"
        case .queryFailed(let state, let message): "PostgreSQL error \(state ?? "?"): \(message)"
        case .closed: "PostgreSQL connection closed"
        }
    }

    /// A unique-constraint violation (SQLSTATE 23505).
    public var isUniqueViolation: Bool {
        if case .queryFailed("23505", _) = self { return true }
        return false
    }
}
