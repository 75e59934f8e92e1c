import CLibpq
import Dispatch
import Foundation
import HeartbeatDomain
import Synchronization

/// One libpq connection. Every libpq call runs on the connection's own serial Dispatch queue,
/// never on Swift's cooperative pool; results are copied out and freed before returning.
///
/// `@unchecked Sendable`: `connection` is only read or written on `queue`; `broken` is a Mutex.
public final class PostgresConnection: @unchecked Sendable {
    private let queue: DispatchQueue
    private var connection: OpaquePointer?
    private let broken = Mutex(false)

    private init(connection: OpaquePointer, label: String) {
        self.connection = connection
        self.queue = DispatchQueue(label: label)
    }

    deinit {
        if let connection { PQfinish(connection) }
    }

    /// Connects with a bounded connect timeout and TCP keepalives (so a vanished server is noticed),
    /// and applies `statementTimeout` to every statement.
    public static func connect(
        url: String, applicationName: String, connectTimeoutSeconds: Int = 3, statementTimeout: Duration = .seconds(30)
    ) async throws -> PostgresConnection {
        let separator = url.contains("?") ? "&" : "?"
        let conninfo =
            url + separator + "connect_timeout=\(connectTimeoutSeconds)&application_name=\(applicationName)"
            + "&keepalives=1&keepalives_idle=5&keepalives_interval=2&keepalives_count=3&tcp_user_timeout=10000"
            // and on the server's side, so a vanished client (a dead leader) loses its session and locks in ~20 s
            + "&options=-c%20tcp_keepalives_idle%3D5%20-c%20tcp_keepalives_interval%3D2%20-c%20tcp_keepalives_count%3D3%20-c%20tcp_user_timeout%3D20000"
        let pointer: OpaquePointer = try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                guard let conn = PQconnectdb(conninfo) else {
                    continuation.resume(throwing: PostgresError.connectionFailed("out of memory"))
                    return
                }
                if PQstatus(conn) != CONNECTION_OK {
                    let message = String(cString: PQerrorMessage(conn)).trimmingCharacters(in: .whitespacesAndNewlines)
                    PQfinish(conn)
                    continuation.resume(throwing: PostgresError.connectionFailed(message))
                    return
                }
                continuation.resume(returning: conn)
            }
        }
        let connection = PostgresConnection(connection: pointer, label: "postgres-\(applicationName)")
        let ms = statementTimeout.milliseconds
        _ = try await connection.query("SELECT set_config('statement_timeout', \(String(ms)), false)")
        return connection
    }

    /// True once a call failed because the connection broke; the owner should open a new one.
    public var isBroken: Bool { broken.withLock { $0 } }

    /// Runs one statement with its binds (see ``PostgresQuery``).
    @discardableResult
    public func query(_ query: PostgresQuery) async throws -> PostgresResult {
        let sql = query.sql
        let parameters = query.binds
        return try await run { connection in
            let copies = parameters.map { $0.map { strdup($0) } ?? nil }
            defer { for copy in copies { free(copy) } }
            let values = copies.map { UnsafePointer<CChar>($0) }
            return values.withUnsafeBufferPointer { buffer in
                PQexecParams(connection, sql, Int32(parameters.count), nil, buffer.baseAddress, nil, nil, 0)
            }
        }
    }

    /// Runs `COPY … FROM STDIN` with `data` in COPY's text format (one row per line, columns
    /// separated by tabs, `\\` escaped). Returns the number of rows copied.
    @discardableResult
    public func copyIn(_ sql: String, data: [UInt8]) async throws -> Int {
        try await run { connection in
            guard let started = PQexec(connection, sql) else { return nil }
            guard PQresultStatus(started) == PGRES_COPY_IN else { return started }
            PQclear(started)
            let sent = data.withUnsafeBufferPointer { buffer in
                buffer.baseAddress.map { base in
                    base.withMemoryRebound(to: CChar.self, capacity: buffer.count) { PQputCopyData(connection, $0, Int32(buffer.count)) }
                } ?? 1
            }
            _ = PQputCopyEnd(connection, sent == 1 ? nil : "the client could not send the rows")
            let final = PQgetResult(connection)
            while let extra = PQgetResult(connection) { PQclear(extra) }
            return final
        }.affectedRows
    }

    /// Runs SQL text that may hold several statements and no parameters (migrations).
    @discardableResult
    public func simpleQuery(_ sql: String) async throws -> PostgresResult {
        try await run { connection in PQexec(connection, sql) }
    }

    /// Closes the connection; later calls fail with ``PostgresError/closed``.
    public func close() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            queue.async {
                if let connection = self.connection { PQfinish(connection) }
                self.connection = nil
                continuation.resume()
            }
        }
    }

    private func run(_ call: @escaping @Sendable (OpaquePointer) -> OpaquePointer?) async throws -> PostgresResult {
        try await withCheckedThrowingContinuation { continuation in
            queue.async {
                guard let connection = self.connection else {
                    continuation.resume(throwing: PostgresError.closed)
                    return
                }
                let result = call(connection)
                defer { PQclear(result) }
                continuation.resume(with: self.outcome(of: result, on: connection))
            }
        }
    }

    private func outcome(of result: OpaquePointer?, on connection: OpaquePointer) -> Result<PostgresResult, any Error> {
        let status = result.map(PQresultStatus) ?? PGRES_FATAL_ERROR
        switch status {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY:
            guard let result else { return .success(PostgresResult(columns: [], rows: [], affectedRows: 0)) }
            return .success(Self.copy(result))
        default:
            if PQstatus(connection) != CONNECTION_OK {
                broken.withLock { $0 = true }
                return .failure(
                    PostgresError.connectionLost(String(cString: PQerrorMessage(connection)).trimmingCharacters(in: .whitespacesAndNewlines)))
            }
            let state = result.flatMap { PQresultErrorField($0, Int32(UInt8(ascii: "C"))) }.map { PostgresError.SQLState(String(cString: $0)) }
            let message = result.map { String(cString: PQresultErrorMessage($0)) } ?? String(cString: PQerrorMessage(connection))
            return .failure(PostgresError.queryFailed(sqlState: state, message: message.trimmingCharacters(in: .whitespacesAndNewlines)))
        }
    }

    private static func copy(_ result: OpaquePointer) -> PostgresResult {
        let rowCount = Int(PQntuples(result))
        let columnCount = Int(PQnfields(result))
        let columns = (0..<columnCount).map { String(cString: PQfname(result, Int32($0))) }
        var rows: [[String?]] = []
        rows.reserveCapacity(rowCount)
        for row in 0..<rowCount {
            rows.append(
                (0..<columnCount).map { column in
                    PQgetisnull(result, Int32(row), Int32(column)) == 1 ? nil : String(cString: PQgetvalue(result, Int32(row), Int32(column)))
                })
        }
        return PostgresResult(columns: columns, rows: rows, affectedRows: Int(String(cString: PQcmdTuples(result))) ?? 0)
    }
}
