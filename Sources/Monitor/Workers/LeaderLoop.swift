import AsyncAlgorithms
import Logging
import ServiceLifecycle

/// The loop every leader-only worker runs: every `interval`, while this instance leads, one round;
/// a round that found work is repeated at once (draining), until it finds none or the lease changes.
/// A new lease starts a round within a quarter second, not an interval later: a new leader scans at
/// once. Ends at graceful shutdown.
///
/// Errors are counted by `onError` and logged; the same error again within `quietPeriod` is not
/// logged again (a Redis outage would otherwise log every poll of every worker), and the round
/// that succeeds after failures says how many there were.
struct LeaderLoop: Sendable {
    let leadership: Leadership
    let interval: Duration
    /// What the worker is, for its log lines.
    let name: String
    let logger: Logger
    /// Called with a round's error (before it is logged), e.g. to count it or to back off.
    var onError: @Sendable (any Error, Leadership.Lease) -> Void = { _, _ in }
    /// How long a repeated error stays unlogged.
    var quietPeriod: Duration = .seconds(10)
    /// Whether a new lease runs a round at once (false: its first round comes an interval after it).
    var runsAtNewLease = true

    /// Runs `round` until shutdown. `round` returns true when it did work and should run again now.
    func run(_ round: @Sendable (Leadership.Lease) async throws -> Bool) async {
        var schedule = Schedule(interval: interval, runsAtNewLease: runsAtNewLease)
        var failures = FailureLog(quietPeriod: quietPeriod)
        for await _ in AsyncTimerSequence(interval: min(interval, Duration.milliseconds(250)), clock: .continuous).cancelOnGracefulShutdown() {
            guard let lease = leadership.current, schedule.isDue(lease, now: .now) else { continue }
            do {
                while try await round(lease), leadership.holds(lease), !Task.isShuttingDownGracefully {}
                if let failed = failures.recovered() {
                    logger.notice("\(name) works again", metadata: ["failed_rounds": "\(failed)"])
                }
            } catch {
                onError(error, lease)
                if let repeats = failures.shouldLog("\(error)", now: .now) {
                    logger.error("\(name) failed", metadata: ["error": "\(error)", "repeats_unlogged": "\(repeats)"])
                }
            }
        }
    }

    /// When a round is due: `interval` after the last one, and for a new lease at once (or, when
    /// it does not run at once, an interval after the lease began).
    struct Schedule {
        let interval: Duration
        let runsAtNewLease: Bool
        var lastRound: ContinuousClock.Instant?
        var lastEpoch: Int?

        init(interval: Duration, runsAtNewLease: Bool = true) {
            self.interval = interval
            self.runsAtNewLease = runsAtNewLease
        }

        mutating func isDue(_ lease: Leadership.Lease, now: ContinuousClock.Instant) -> Bool {
            if lease.epoch != lastEpoch {
                lastEpoch = lease.epoch
                lastRound = now
                return runsAtNewLease
            }
            guard let last = lastRound, now - last < interval else {
                lastRound = now
                return true
            }
            return false
        }
    }

    /// Which failures are worth a log line.
    struct FailureLog {
        let quietPeriod: Duration
        var lastLogged: (message: String, at: ContinuousClock.Instant)?
        var unlogged = 0
        var failedRounds = 0

        init(quietPeriod: Duration) { self.quietPeriod = quietPeriod }

        /// The count of repeats not logged since the last line, when this failure should be logged.
        mutating func shouldLog(_ message: String, now: ContinuousClock.Instant) -> Int? {
            failedRounds += 1
            if let last = lastLogged, last.message == message, now - last.at < quietPeriod {
                unlogged += 1
                return nil
            }
            defer { (lastLogged, unlogged) = ((message, now), 0) }
            return unlogged
        }

        /// After failures, how many rounds failed (and forgets them); nil when none did.
        mutating func recovered() -> Int? {
            guard failedRounds > 0 else { return nil }
            defer { (failedRounds, unlogged, lastLogged) = (0, 0, nil) }
            return failedRounds
        }
    }
}
