import Synchronization

/// The monitor's shared ``OutageCredit``: the elector records, the scanner reads.
final class RedisOutages: Sendable {
    private let state: Mutex<OutageCredit>

    init(offlineAfter: Duration) {
        state = Mutex(OutageCredit(lasts: offlineAfter))
    }

    @discardableResult
    func reached() -> Duration? { state.withLock { $0.reached(at: .now) } }
    func missed() { state.withLock { $0.missed(at: .now) } }
    var credit: Duration { state.withLock { $0.currentCredit(at: .now) } }
    /// True while the elector's probes have not reached Redis again since one failed.
    var isOngoing: Bool { state.withLock { $0.isOngoing } }
}
