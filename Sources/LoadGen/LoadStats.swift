import Histogram
import Synchronization

/// Counters and the latency histogram of a load run, shared by every simulated device.
final class LoadStats: Sendable {
    struct Snapshot: Sendable {
        var sent = 0
        var ok = 0
        var byStatus: [Int: Int] = [:]
        var transportErrors = 0
        var latency = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
    }

    private let state = Mutex(Snapshot())

    /// Records one answered request and its latency in microseconds.
    func record(status: Int, microseconds: UInt64) {
        state.withLock { state in
            state.sent += 1
            if status == 200 { state.ok += 1 }
            state.byStatus[status, default: 0] += 1
            _ = state.latency.record(max(1, microseconds))
        }
    }

    func recordTransportError() {
        state.withLock { state in
            state.sent += 1
            state.transportErrors += 1
        }
    }

    var snapshot: Snapshot { state.withLock { $0 } }
}
