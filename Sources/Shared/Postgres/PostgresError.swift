/// Why a PostgreSQL call failed.
public enum PostgresError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Could not connect (bad URL, server down, authentication).
    case connectionFailed(String)
    /// The connection broke; open a new one.
    case connectionLost(String)
    /// The server refused the statement.
    case queryFailed(sqlState: SQLState?, message: String)
    /// The connection has been closed by this process.
    case closed

    public var description: String {
        switch self {
        case .connectionFailed(let why): "PostgreSQL connection failed: \(why)"
        case .connectionLost(let why): "PostgreSQL connection lost: \(why)"
        case .queryFailed(let state, let message): "PostgreSQL error \(state?.code ?? "?"): \(message)"
        case .closed: "PostgreSQL connection closed"
        }
    }

    /// The SQLSTATE of a refused statement.
    public var sqlState: SQLState? {
        if case .queryFailed(let state, _) = self { return state }
        return nil
    }

    /// A five-character SQLSTATE code, with names for those this system acts on.
    public struct SQLState: Sendable, Hashable, CustomStringConvertible {
        public let code: String

        public init(_ code: String) { self.code = code }

        /// 23505: a unique constraint (a device registered twice).
        public static let uniqueViolation = SQLState("23505")
        /// 23514: a check constraint, also "no partition of relation found for row".
        public static let checkViolation = SQLState("23514")
        /// 57014: the statement timeout cancelled the statement.
        public static let queryCanceled = SQLState("57014")
        /// HB001: `assert_leader(pid)`, the lock session is not the caller's any more (migration 4).
        public static let notLeader = SQLState("HB001")

        public var description: String { code }
    }
}
