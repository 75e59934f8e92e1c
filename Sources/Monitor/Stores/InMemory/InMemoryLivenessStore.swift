import HeartbeatDomain
import RedisAdapter
import Synchronization

/// ``LivenessStore`` in memory, for tests of the scanner, the reconciler and the re-seed: the same
/// rules as the scripts (strictly older than the cutoff is stale; in-flight transitions block a restore).
final class InMemoryLivenessStore: LivenessStore {
    struct State: Sendable {
        /// Per bucket: device → score (ms).
        var online: [Int: [DeviceID: Int64]] = [:]
        /// Per bucket: transitions written, in order.
        var transitions: [Int: [StatusTransition]] = [:]
        var nowMs: Int64 = 1_700_000_000_000
        var reachable = true
        /// Buckets out of reach while the rest answers (a cluster primary down): their calls fail.
        var unreachableBuckets: Set<Int> = []
    }

    /// Fails as Redis out of reach would, for `bucket`.
    private func checkReachable(_ bucket: Int) throws {
        let reachable = state.withLock { $0.reachable && !$0.unreachableBuckets.contains(bucket) }
        if !reachable { throw RedisError.unavailable("bucket \(bucket) out of reach") }
    }

    let state = Mutex(State())

    func countStale(bucket: Int, silenceAllowed: Duration) async throws -> StaleCount {
        try checkReachable(bucket)
        return state.withLock { state in
            let members = state.online[bucket] ?? [:]
            let cutoff = state.nowMs - silenceAllowed.milliseconds
            return StaleCount(stale: members.values.filter { $0 < cutoff }.count, online: members.count, nowMs: state.nowMs)
        }
    }

    func declareOffline(bucket: Int, cutoffMs: Int64, limit: Int) async throws -> (declared: Int, remaining: Int) {
        try checkReachable(bucket)
        return state.withLock { state in
            let stale = (state.online[bucket] ?? [:]).filter { $0.value < cutoffMs }.sorted { ($0.value, $0.key.string) < ($1.value, $1.key.string) }
            for (device, score) in stale.prefix(limit) {
                state.online[bucket]?[device] = nil
                state.transitions[bucket, default: []].append(
                    StatusTransition(
                        deviceID: device, kind: .offline, at: UTCTimestamp(millisecondsSinceEpoch: state.nowMs),
                        lastHeartbeat: UTCTimestamp(millisecondsSinceEpoch: score)))
            }
            return (min(limit, stale.count), max(0, stale.count - limit))
        }
    }

    func absent(_ ids: [DeviceID], bucket: Int) async throws -> [DeviceID] {
        state.withLock { state in ids.filter { state.online[bucket]?[$0] == nil } }
    }

    func restoreMissing(_ devices: [ScoredDevice], bucket: Int, streamLimit: Int) async throws -> [DeviceID]? {
        state.withLock { state in
            guard (state.transitions[bucket]?.count ?? 0) <= streamLimit else { return nil }
            let inFlight = Set((state.transitions[bucket] ?? []).map(\.deviceID))
            var added: [DeviceID] = []
            for device in devices where !inFlight.contains(device.id) && state.online[bucket]?[device.id] == nil {
                state.online[bucket, default: [:]][device.id] = device.scoreMs
                added.append(device.id)
            }
            return added
        }
    }

    func undoRestore(_ devices: [ScoredDevice], bucket: Int) async throws {
        state.withLock { state in
            for device in devices where state.online[bucket]?[device.id] == device.scoreMs { state.online[bucket]?[device.id] = nil }
        }
    }

    func seedOnline(_ device: ScoredDevice, bucket: Int) async throws {
        state.withLock { state in
            if state.online[bucket]?[device.id] == nil { state.online[bucket, default: [:]][device.id] = device.scoreMs }
        }
    }

    func nowMs() async throws -> Int64 { state.withLock { $0.nowMs } }

    /// The probe over `buckets` (what a store with a key schema would know).
    let buckets: Range<Int>

    init(buckets: Range<Int> = 0..<2) {
        self.buckets = buckets
    }

    func probe() async -> RedisProbe {
        state.withLock { state in
            guard state.reachable else { return .unreachable(buckets: buckets) }
            let unreachable = state.unreachableBuckets.intersection(buckets)
            return unreachable.isEmpty
                ? .reached(runID: "in-memory") : RedisProbe(runID: nil, reachable: true, unreachableBuckets: unreachable)
        }
    }
}
