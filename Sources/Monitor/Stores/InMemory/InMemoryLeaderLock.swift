import Synchronization

/// ``LeaderLock`` in memory, for tests of the election: the instances of a test share one
/// ``Server`` (who holds the lock, and whether "PostgreSQL" answers); closing a session frees its lock.
final class InMemoryLeaderLock: LeaderLock {
    final class Server: Sendable {
        let holder = Mutex<Int?>(nil)
        let reachable = Mutex(true)
        private let sessions = Atomic(0)

        func newSession() -> Int { sessions.wrappingAdd(1, ordering: .relaxed).newValue }
    }

    struct Unreachable: Error {}
    struct SessionLost: Error {}

    let server: Server
    private let session: Int

    init(server: Server) {
        self.server = server
        self.session = server.newSession()
    }

    private func requireServer() throws {
        guard server.reachable.withLock({ $0 }) else { throw Unreachable() }
    }

    func tryAcquire() async throws -> Leadership.Session? {
        try requireServer()
        let taken = server.holder.withLock { holder -> Bool in
            if holder == nil { holder = session }
            return holder == session
        }
        return taken ? Leadership.Session(backendPID: session) : nil
    }

    func verify() async throws {
        try requireServer()
        guard server.holder.withLock({ $0 == session }) else { throw SessionLost() }
    }

    func release() async throws {
        try requireServer()
        server.holder.withLock { if $0 == session { $0 = nil } }
    }

    func close() async {
        server.holder.withLock { if $0 == session { $0 = nil } }
    }
}
