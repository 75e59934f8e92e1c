import Synchronization

/// Exponential backoff between failed rounds: 200 ms doubling to 5 s, reset by a success.
final class Backoff: Sendable {
    private let state: Mutex<(delay: Duration, due: Bool)>
    let initial: Duration
    let maximum: Duration

    init(initial: Duration = .milliseconds(200), maximum: Duration = .seconds(5)) {
        self.initial = initial
        self.maximum = maximum
        self.state = Mutex((initial, false))
    }

    func failed() {
        state.withLock { $0.due = true }
    }

    func succeeded() {
        state.withLock { $0 = (initial, false) }
    }

    /// Sleeps the current delay if the last round failed, and doubles it for the next failure.
    func wait() async {
        let delay: Duration? = state.withLock { state in
            guard state.due else { return nil }
            defer { state.delay = min(state.delay * 2, maximum) }
            return state.delay
        }
        if let delay { try? await Task.sleep(for: delay) }
    }
}
