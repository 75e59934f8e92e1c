/// The lock that elects the active monitor.
protocol LeaderLock: Sendable {
    /// Tries to take the lock. - Returns: the session holding it, or `nil` when another instance has it.
    func tryAcquire() async throws -> Leadership.Session?
    /// Throws when the session holding the lock broke (and with it the lock).
    func verify() async throws
    /// Gives the lock up, keeping the session for the next bid.
    func release() async throws
    /// Closes the session (after a failure, or at shutdown; the lock goes with it).
    func close() async
}
