import HeartbeatDomain
import Synchronization

/// Which devices' `devices.last_heartbeat` the history writer writes behind: each device at most
/// once per `interval` (half of `OFFLINE_AFTER`), not once per heartbeat.
///
/// Updating a device's row for every heartbeat cost PostgreSQL as much as the history row itself
/// (finding the row by primary key, locking it, a HOT update, pruning its chain): 6–7 µs of ~15 µs
/// per heartbeat, 10% of the stack's throughput on two cores (`docs/performance.md`, sixth
/// round). The column may now be up to `interval` behind; what needs the exact newest heartbeat
/// (the registry re-seed, the reconciler, the ops API) reads `last_heartbeat_of(id,
/// last_heartbeat)` (migration 10): the newer of the column and the device's history since it.
///
/// Kept in memory per process: a new leader (or a restart) writes every device on first sight.
final class LastHeartbeatThrottle: Sendable {
    private struct State {
        /// The newest heartbeat (Redis ms) written for each device seen within about an interval.
        var written: [DeviceID: Int64] = [:]
        /// The newest heartbeat at the last pruning of `written`.
        var prunedAt: Int64 = 0
    }

    private let state = Mutex(State())
    /// The most a device's column may lag its newest heartbeat, in milliseconds.
    let intervalMs: Int64

    init(interval: Duration) {
        intervalMs = max(0, interval.milliseconds)
    }

    /// The heartbeats to write, the newest of each device: devices not written yet, or written
    /// `interval` or more before this heartbeat. One lookup per heartbeat (a per-batch map of each
    /// device's newest, filtered here, cost two); the lookups are still ~8% of the monitor's samples
    /// under load, against ~9% with two: a lookup in a map of every device misses the cache.
    func due(_ heartbeats: some Sequence<(DeviceID, Int64)>) -> [DeviceID: Int64] {
        state.withLock { state in
            var due: [DeviceID: Int64] = [:]
            for (device, at) in heartbeats {
                if let written = state.written[device], at - written < intervalMs { continue }
                if due[device].map({ $0 < at }) ?? true { due[device] = at }
            }
            return due
        }
    }

    /// Notes `rows` as written, once PostgreSQL has them. Entries an interval older than the newest
    /// are dropped now and then (they would be due anyway), so memory follows the devices beating
    /// within an interval, not every device ever seen.
    func written(_ rows: [DeviceID: Int64]) {
        guard let newest = rows.values.max() else { return }
        state.withLock { state in
            for (device, at) in rows where state.written[device].map({ $0 < at }) ?? true { state.written[device] = at }
            if newest - state.prunedAt >= intervalMs {
                state.written = state.written.filter { newest - $0.value < intervalMs }
                state.prunedAt = newest
            }
        }
    }

    /// Devices currently remembered (for tests).
    var count: Int { state.withLock { $0.written.count } }
}
