import Synchronization

/// The monitor's shared ``OutageCredit``, one per bucket (on a Redis Cluster a primary's outage is
/// its buckets' alone): the elector records each probe, the scanner reads a bucket's.
final class RedisOutages: Sendable {
    private let state: Mutex<[OutageCredit]>

    init(offlineAfter: Duration, buckets: Range<Int>) {
        state = Mutex(Array(repeating: OutageCredit(lasts: offlineAfter), count: buckets.count))
    }

    /// Records a probe for every bucket. Returns the longest outage it ended, if any.
    @discardableResult
    func record(_ probe: RedisProbe) -> Duration? {
        let now = ContinuousClock.now
        return state.withLock { credits in
            var ended: Duration?
            for bucket in credits.indices {
                if probe.unreachableBuckets.contains(bucket) {
                    credits[bucket].missed(at: now)
                } else if let outage = credits[bucket].reached(at: now) {
                    ended = max(ended ?? .zero, outage)
                }
            }
            return ended
        }
    }

    /// What the scanner adds to `OFFLINE_AFTER` for `bucket` now.
    func credit(bucket: Int) -> Duration { state.withLock { $0[bucket].currentCredit(at: .now) } }

    /// True while the probes have not reached `bucket`'s Redis again since one failed.
    func isOngoing(bucket: Int) -> Bool { state.withLock { $0[bucket].isOngoing } }
}
