import Synchronization

/// The Redis server's `run_id` as last seen, and whether a restart seen since still needs the
/// leader's attention. A value type's worth of state behind a lock, shared by the loop's passes.
final class RunIDWatch: Sendable {
    private let state = Mutex<(runID: String?, rebaselineDue: Bool)>((nil, false))

    /// Records the `run_id` seen now; a change from an earlier one marks a restart.
    func observe(_ runID: String) {
        state.withLock { state in
            if let previous = state.runID, previous != runID { state.rebaselineDue = true }
            state.runID = runID
        }
    }

    /// True after a restart until ``rebaselined()``.
    var rebaselineDue: Bool { state.withLock { $0.rebaselineDue } }

    func rebaselined() { state.withLock { $0.rebaselineDue = false } }
}
