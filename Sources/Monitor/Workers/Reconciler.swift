import HeartbeatDomain
import Logging
import ServiceLifecycle

/// While leading, every `RECONCILE_INTERVAL_SECONDS`: compares the devices PostgreSQL holds online
/// with Redis's online sets. One missing from Redis (a partial loss: the AOF `everysec` window, a
/// replica promoted before it had the write) would otherwise stay online forever; it is put back in
/// its online set with its last heartbeat as the score, so the scanner declares it offline
/// `OFFLINE_AFTER` after that heartbeat (at once when that is past), through the storm guard as usual.
///
/// The first pass comes an interval after this instance began leading, not at once: a new leader
/// after a Redis loss must let the registry re-seed put devices back with their blind window first.
/// Buckets whose registry is not loaded (re-seed pending) are skipped for the same reason.
struct Reconciler: Service {
    let devices: any DeviceRepository
    let registry: any RegistryCache
    let liveness: any LivenessStore
    let keys: KeySchema
    let leadership: Leadership
    let interval: Duration
    let metrics: MonitorMetrics
    let logger: Logger
    /// Buckets whose transitions stream is longer than this are skipped for the round: the applier
    /// is behind, and PostgreSQL's view is about to change anyway.
    var streamLimit = 10_000

    func run() async throws {
        var loop = LeaderLoop(leadership: leadership, interval: interval, name: "reconciliation", logger: logger)
        loop.runsAtNewLease = false
        await loop.run { lease in
            let repaired = try await reconcile(lease)
            if repaired > 0 {
                metrics.reconcileRepaired.increment(by: repaired)
                logger.warning(
                    "devices online in PostgreSQL but missing from Redis were put back on the offline path",
                    metadata: ["devices": "\(repaired)"])
            }
            return false
        }
    }

    /// One pass over the devices PostgreSQL holds online. Returns how many were restored.
    func reconcile(_ lease: Leadership.Lease) async throws -> Int {
        var after: DeviceID?
        var repaired = 0
        let unloaded = Set(try await registry.unloadedBuckets())
        while leadership.holds(lease) {
            let page = try await devices.online(after: after, limit: 2000)
            guard let last = page.last else { break }
            after = last
            for (bucket, ids) in Dictionary(grouping: page, by: keys.bucket(of:)) where leadership.holds(lease) && !unloaded.contains(bucket) {
                let missing = try await liveness.absent(ids, bucket: bucket)
                guard !missing.isEmpty else { continue }
                // their newest heartbeats, exact (`devices.last_heartbeat` is written behind)
                repaired += try await restore(try await devices.lastHeartbeats(of: missing), bucket: bucket)
            }
        }
        return repaired
    }

    /// Restores the bucket's missing devices, then undoes it for any that PostgreSQL turned offline meanwhile.
    private func restore(_ scored: [ScoredDevice], bucket: Int) async throws -> Int {
        guard let added = try await liveness.restoreMissing(scored, bucket: bucket, streamLimit: streamLimit), !added.isEmpty else { return 0 }
        let changed = try await devices.notOnline(among: added)
        if !changed.isEmpty {
            try await liveness.undoRestore(scored.filter { changed.contains($0.id) }, bucket: bucket)
        }
        return added.count - changed.count
    }
}
