import Logging
import NIOCore
import Synchronization

/// A client's ``RedisLoopConnection``s: one per event loop and server, made on first use and
/// closed together at shutdown.
final class RedisLoopConnections: Sendable {
    private struct Key: Hashable {
        let loop: ObjectIdentifier
        let host: String
        let port: Int
    }

    private let timeout: Duration
    private let reconnectBackoff: Duration
    private let logger: Logger
    private let state = Mutex<(byKey: [Key: RedisLoopConnection], closed: Bool)>(([:], false))

    init(timeout: Duration, reconnectBackoff: Duration, logger: Logger) {
        self.timeout = timeout
        self.reconnectBackoff = reconnectBackoff
        self.logger = logger
    }

    /// `eventLoop`'s connection to `endpoint`; `nil` after ``closeAll()``.
    func connection(to endpoint: RedisEndpoint, on eventLoop: any EventLoop) -> RedisLoopConnection? {
        let key = Key(loop: ObjectIdentifier(eventLoop as AnyObject), host: endpoint.host, port: endpoint.port)
        return state.withLock { state in
            guard !state.closed else { return nil }
            if let existing = state.byKey[key] { return existing }
            let connection = RedisLoopConnection(
                eventLoop: eventLoop, endpoint: endpoint, timeout: timeout, reconnectBackoff: reconnectBackoff, logger: logger)
            state.byKey[key] = connection
            return connection
        }
    }

    /// Closes every connection (each on its loop); later requests get none.
    func closeAll() async {
        let connections = state.withLock { state in
            state.closed = true
            return Array(state.byKey.values)
        }
        for connection in connections { try? await connection.eventLoop.submit { connection.close() }.get() }
    }
}
