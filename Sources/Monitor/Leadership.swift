import Synchronization

/// Whether this instance is the active monitor, and the session that holds the lock.
///
/// Every worker reads ``current`` before each unit of work and stops when it is `nil` or its epoch
/// changed. Writes go through pool sessions fenced against the lease's session in PostgreSQL
/// (`assert_leader`, `apply_transitions_fenced`), so once that session dies (and the advisory lock
/// with it) nothing more of this instance commits.
final class Leadership: Sendable {
    /// The session holding the lock (the lock itself stays with ``LeaderLock``).
    struct Session: Sendable {
        /// The session's backend pid: writes on other connections are fenced with
        /// `assert_leader(pid)`, which fails once this session no longer holds the lock.
        let backendPID: Int
    }

    struct Lease: Sendable {
        /// Increases with every acquisition; lets workers notice a lost-and-regained lock.
        let epoch: Int
        let session: Session

        var backendPID: Int { session.backendPID }
    }

    private let state = Mutex<(lease: Lease?, epoch: Int)>((nil, 0))

    var current: Lease? { state.withLock { $0.lease } }
    var isLeader: Bool { current != nil }

    func grant(_ session: Session) -> Lease {
        state.withLock { state in
            state.epoch += 1
            let lease = Lease(epoch: state.epoch, session: session)
            state.lease = lease
            return lease
        }
    }

    /// Drops the lease if it is still `epoch` (or any lease when `epoch` is nil).
    func revoke(epoch: Int? = nil) {
        state.withLock { state in
            if epoch == nil || state.lease?.epoch == epoch { state.lease = nil }
        }
    }

    /// True while `lease` is still the current one.
    func holds(_ lease: Leadership.Lease) -> Bool { current?.epoch == lease.epoch }
}
