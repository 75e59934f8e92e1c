import HeartbeatDomain
import Synchronization

/// The storm guard the scanner decides with and the ops API releases (and `/readyz` reports).
final class SharedStormGuard: Sendable {
    private let state: Mutex<StormGuard>

    init(_ guard: StormGuard) {
        state = Mutex(`guard`)
    }

    func withLock<T: Sendable>(_ body: (inout StormGuard) -> T) -> T {
        state.withLock { body(&$0) }
    }
}
