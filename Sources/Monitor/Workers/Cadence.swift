import Synchronization

/// When a periodic chore inside a faster loop last ran (history upkeep hourly, the status count).
final class Cadence: Sendable {
    private let last = Mutex<ContinuousClock.Instant?>(nil)

    /// True when the chore never ran, or `interval` has passed since it last did.
    func isDue(every interval: Duration) -> Bool { last.withLock { $0.map { ContinuousClock.now - $0 > interval } ?? true } }

    /// Records that the chore ran now.
    func done() { last.withLock { $0 = .now } }
}
