import Synchronization

/// The last value seen of something that changes rarely (the Redis server's `run_id`).
final class RunIDWatch: Sendable {
    private let state = Mutex<String?>(nil)

    var value: String? {
        get { state.withLock { $0 } }
        set { state.withLock { $0 = newValue } }
    }
}
