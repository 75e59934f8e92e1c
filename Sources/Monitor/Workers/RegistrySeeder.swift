import HeartbeatDomain
import Logging
import ServiceLifecycle

/// Redis is a cache of the registry; PostgreSQL is the truth. While leading, this checks the
/// per-bucket registry markers every `checkInterval` (a fraction of a second: while a marker is
/// missing the gateway answers `503` to the bucket's devices that Redis no longer knows). When a
/// marker is gone (Redis restarted without its data, or failed over to an empty replica), it writes
/// every device of those buckets back (token hash and playlist) and puts the devices PostgreSQL
/// holds online back into the online sets, then sets the markers.
///
/// The time Redis could not see is not silence: devices kept beating into `503`s. So an online
/// device's score is its last heartbeat in PostgreSQL (`last_heartbeat_of`: the history writer's
/// rows, exact even where `devices.last_heartbeat` is written behind) moved
/// forward by the blind window — from the newest heartbeat PostgreSQL has of the bucket (about
/// when Redis lost it) to now. A device that was beating until the loss gets a full
/// `OFFLINE_AFTER` from the re-seed; one that had been silent for a while before keeps that silence.
struct RegistrySeeder: Service {
    let devices: any DeviceRepository
    let registry: any RegistryCache
    let liveness: any LivenessStore
    let keys: KeySchema
    let leadership: Leadership
    let checkInterval: Duration
    let metrics: MonitorMetrics
    let logger: Logger

    func run() async throws {
        await LeaderLoop(leadership: leadership, interval: checkInterval, name: "registry re-seed", logger: logger).run { _ in
            let missing = try await registry.unloadedBuckets()
            guard !missing.isEmpty else { return false }
            let started = ContinuousClock.now
            let count = try await seed(buckets: Set(missing))
            let took = ContinuousClock.now - started
            metrics.registryReseeds.increment()
            metrics.registryReseedSeconds.record(took.seconds)
            logger.notice(
                "re-seeded the Redis registry from PostgreSQL",
                metadata: [
                    "buckets": "\(missing.count)", "devices": "\(count)", "took": "\(took)",
                ])
            return false
        }
    }

    /// Writes every registered device of `buckets` into Redis and marks the buckets loaded.
    /// - Returns: how many devices were written.
    func seed(buckets: Set<Int>) async throws -> Int {
        var rows: [RegisteredDevice] = []
        var after: DeviceID?
        while true {
            let page = try await devices.registered(after: after, limit: 5000)
            guard let last = page.last else { break }
            rows += page.filter { buckets.contains(keys.bucket(of: $0.id)) }
            after = last.id
        }
        let nowMs = try await liveness.nowMs()
        let shifts = Self.blindWindows(rows, keys: keys, nowMs: nowMs)
        for start in stride(from: 0, to: rows.count, by: 1000) {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for row in rows[start..<min(start + 1000, rows.count)] {
                    group.addTask {
                        try await registry.write(device: row.id, tokenHash: row.tokenHash, playlist: row.playlist)
                        guard row.online else { return }
                        let bucket = keys.bucket(of: row.id)
                        // NX: a heartbeat that already landed since the loss has the true score
                        let score = min(nowMs, (row.lastHeartbeatMs ?? nowMs) + (shifts[bucket] ?? 0))
                        try await liveness.seedOnline(ScoredDevice(id: row.id, scoreMs: score), bucket: bucket)
                    }
                }
                try await group.waitForAll()
            }
        }
        // `hb:config:buckets` went with the data: a process started now with another count must still be refused
        try await registry.recordBucketCount()
        try await registry.markLoaded(buckets: buckets.sorted())
        return rows.count
    }

    /// Per bucket, how long Redis was blind: now minus the newest heartbeat PostgreSQL has of the
    /// bucket's devices (never negative).
    static func blindWindows(_ rows: [RegisteredDevice], keys: KeySchema, nowMs: Int64) -> [Int: Int64] {
        var newest: [Int: Int64] = [:]
        for row in rows {
            guard let last = row.lastHeartbeatMs else { continue }
            newest[keys.bucket(of: row.id)] = max(newest[keys.bucket(of: row.id)] ?? last, last)
        }
        return newest.mapValues { max(0, nowMs - $0) }
    }
}
