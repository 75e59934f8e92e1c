import AsyncAlgorithms
import Logging
import ServiceLifecycle

/// The loop every leader-only worker runs: on each tick of `interval`, while this instance leads,
/// do one round; a round that found work is repeated at once (draining), until it finds none or the
/// lease changes. Ends at graceful shutdown. Errors are logged (and counted by `onError`) and the
/// next tick tries again.
struct LeaderLoop: Sendable {
    let leadership: Leadership
    let interval: Duration
    /// What the worker is, for its log lines.
    let name: String
    let logger: Logger
    /// Called with a round's error (after it is logged), e.g. to count it or to back off.
    var onError: @Sendable (any Error, Leadership.Lease) -> Void = { _, _ in }

    /// Runs `round` until shutdown. `round` returns true when it did work and should run again now.
    func run(
        _ round: @Sendable (Leadership.Lease) async throws -> Bool
    ) async {
        for await _ in AsyncTimerSequence(interval: interval, clock: .continuous).cancelOnGracefulShutdown() {
            guard let lease = leadership.current else { continue }
            do {
                while try await round(lease), leadership.holds(lease), !Task.isShuttingDownGracefully {}
            } catch {
                onError(error, lease)
                logger.error("\(name) failed", metadata: ["error": "\(error)"])
            }
        }
    }
}
