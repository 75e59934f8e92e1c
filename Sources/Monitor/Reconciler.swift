import HeartbeatDomain
import Logging
import PostgresAdapter
import RedisAdapter
import ServiceLifecycle

/// While leading, every `RECONCILE_INTERVAL_SECONDS`: compares the devices PostgreSQL holds online
/// with Redis's online sets. One missing from Redis (a partial loss: the AOF `everysec` window, a
/// replica promoted before it had the write) would otherwise stay online forever; it is put back in
/// its online set with its last heartbeat as the score, so the scanner declares it offline
/// `OFFLINE_AFTER` after that heartbeat (at once when that is past), through the storm guard as usual.
struct Reconciler: Service {
    let db: PostgresPool
    let redis: RedisClient
    let keys: KeySchema
    let leadership: Leadership
    let interval: Duration
    let metrics: MonitorMetrics
    let logger: Logger
    /// Buckets whose transitions stream is longer than this are skipped for the round: the applier
    /// is behind, and PostgreSQL's view is about to change anyway.
    var streamLimit = 10_000

    func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            guard await sleepUnlessShuttingDown(interval) else { return }
            guard let lease = leadership.current else { continue }
            do {
                let repaired = try await reconcile(lease)
                if repaired > 0 {
                    metrics.reconcileRepaired.increment(by: repaired)
                    logger.warning("devices online in PostgreSQL but missing from Redis were put back on the offline path",
                                   metadata: ["devices": "\(repaired)"])
                }
            } catch {
                logger.error("reconciliation failed", metadata: ["error": "\(error)"])
            }
        }
    }

    /// One pass over the devices PostgreSQL holds online. Returns how many were restored.
    func reconcile(_ lease: Leadership.Lease) async throws -> Int {
        var after = "00000000-0000-0000-0000-000000000000"
        var repaired = 0
        while leadership.holds(lease) {
            let rows = try await db.query("""
                SELECT id, (extract(epoch FROM coalesce(last_heartbeat, status_changed_at, now())) * 1000)::bigint
                FROM devices WHERE status = 'online' AND id > $1::uuid ORDER BY id LIMIT 2000
                """, [after]).rows
            guard let last = rows.last?[0] else { break }
            after = last
            var byBucket: [Int: [(id: String, score: String)]] = [:]
            for row in rows {
                guard let id = row[0].flatMap({ DeviceID($0) }), let score = row[1] else { continue }
                byBucket[keys.bucket(of: id), default: []].append((id.string, score))
            }
            for (bucket, devices) in byBucket where leadership.holds(lease) {
                repaired += try await restore(devices, bucket: bucket)
            }
        }
        return repaired
    }

    /// Restores the bucket's missing devices, then undoes it for any that PostgreSQL turned offline meanwhile.
    private func restore(_ devices: [(id: String, score: String)], bucket: Int) async throws -> Int {
        let streamKeys = [keys.online(bucket: bucket), keys.transitions(bucket: bucket)]
        let reply = try await redis.run(ReconcileScript.restore, keys: streamKeys,
                                        arguments: [String(streamLimit)] + devices.flatMap { [$0.id, $0.score] })
        guard let added = reply.array?.compactMap(\.string), !added.isEmpty else { return 0 }
        let changed = Set(try await db.query(
            "SELECT id FROM devices WHERE id = ANY($1::uuid[]) AND status <> 'online'", [PostgresArray.plain(added)]
        ).rows.compactMap { $0[0] })
        if !changed.isEmpty {
            let scores = Dictionary(devices.map { ($0.id, $0.score) }, uniquingKeysWith: { a, _ in a })
            _ = try await redis.run(ReconcileScript.undo, keys: streamKeys,
                                    arguments: changed.sorted().flatMap { [$0, scores[$0] ?? "0"] })
        }
        return added.count - changed.count
    }
}
