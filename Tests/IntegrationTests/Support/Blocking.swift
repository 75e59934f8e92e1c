import Dispatch

/// Runs blocking work (waiting for a process, a socket read) on a Dispatch thread, so the few
/// threads of Swift's cooperative pool stay free for the code under test.
func offPool<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(returning: body()) }
    }
}
