import HeartbeatDomain
import Logging
import PostgresAdapter
import RedisAdapter
import ServiceLifecycle

/// Redis is a cache of the registry; PostgreSQL is the truth. While leading, this checks the
/// per-bucket registry markers every `checkInterval` (a fraction of a second: while a marker is
/// missing the gateway answers `503` to the bucket's devices that Redis no longer knows). When a
/// marker is gone (Redis restarted without its data, or failed over to an empty replica), it writes
/// every device of those buckets back (token hash and playlist) and puts the devices PostgreSQL
/// holds online back into the online sets, then sets the markers.
///
/// The time Redis could not see is not silence: devices kept beating into `503`s. So an online
/// device's score is its last heartbeat in PostgreSQL (kept recent by the history writer) moved
/// forward by the blind window — from the newest heartbeat PostgreSQL has of the bucket (about
/// when Redis lost it) to now. A device that was beating until the loss gets a full
/// `OFFLINE_AFTER` from the re-seed; one that had been silent for a while before keeps that silence.
struct RegistrySeeder: Service {
    let db: PostgresPool
    let registry: DeviceRegistryCache
    let leadership: Leadership
    let checkInterval: Duration
    let metrics: MonitorMetrics
    let logger: Logger

    func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            if leadership.isLeader {
                do {
                    let missing = try await registry.unloadedBuckets()
                    if !missing.isEmpty {
                        let started = ContinuousClock.now
                        let count = try await seed(buckets: Set(missing))
                        let took = ContinuousClock.now - started
                        metrics.registryReseeds.increment()
                        metrics.registryReseedSeconds.record(Double(took.milliseconds) / 1000)
                        logger.notice("re-seeded the Redis registry from PostgreSQL", metadata: [
                            "buckets": "\(missing.count)", "devices": "\(count)", "took": "\(took)",
                        ])
                    }
                } catch {
                    logger.error("registry re-seed failed", metadata: ["error": "\(error)"])
                }
            }
            guard await sleepUnlessShuttingDown(checkInterval) else { return }
        }
    }

    /// One registered device as PostgreSQL has it.
    struct Row: Sendable {
        var id: DeviceID
        var tokenHash: String
        var playlist: String?
        var online: Bool
        var lastHeartbeatMs: Int64?
    }

    /// Writes every registered device of `buckets` into Redis and marks the buckets loaded.
    /// - Returns: how many devices were written.
    func seed(buckets: Set<Int>) async throws -> Int {
        let keys = registry.keys
        var rows: [Row] = []
        var after = "00000000-0000-0000-0000-000000000000"
        while true {
            let page = try await db.query("""
                SELECT id, token_hash, assigned_playlist, status, (extract(epoch FROM last_heartbeat) * 1000)::bigint
                FROM devices WHERE id > $1::uuid AND token_hash IS NOT NULL ORDER BY id LIMIT 5000
                """, [after]).rows
            guard let last = page.last?[0] else { break }
            for row in page {
                guard let id = row[0].flatMap({ DeviceID($0) }), let hash = row[1], buckets.contains(keys.bucket(of: id)) else { continue }
                rows.append(Row(id: id, tokenHash: hash, playlist: row[2], online: row[3] == "online", lastHeartbeatMs: row[4].flatMap { Int64($0) }))
            }
            after = last
        }
        let nowMs = try await redisTime()
        let shifts = Self.blindWindows(rows, keys: keys, nowMs: nowMs)
        for start in stride(from: 0, to: rows.count, by: 1000) {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for row in rows[start..<min(start + 1000, rows.count)] {
                    group.addTask {
                        try await registry.write(device: row.id, tokenHash: row.tokenHash, playlist: row.playlist)
                        if row.online {
                            let bucket = keys.bucket(of: row.id)
                            let score = min(nowMs, (row.lastHeartbeatMs ?? nowMs) + (shifts[bucket] ?? 0))
                            // NX: a heartbeat that already landed since the loss has the true score
                            try await registry.redis.execute(["ZADD", keys.online(bucket: bucket), "NX", String(score), row.id.string])
                        }
                    }
                }
                try await group.waitForAll()
            }
        }
        try await registry.markLoaded(buckets: buckets.sorted())
        return rows.count
    }

    /// Per bucket, how long Redis was blind: now minus the newest heartbeat PostgreSQL has of the
    /// bucket's devices (never negative).
    static func blindWindows(_ rows: [Row], keys: KeySchema, nowMs: Int64) -> [Int: Int64] {
        var newest: [Int: Int64] = [:]
        for row in rows {
            guard let last = row.lastHeartbeatMs else { continue }
            newest[keys.bucket(of: row.id)] = max(newest[keys.bucket(of: row.id)] ?? last, last)
        }
        return newest.mapValues { max(0, nowMs - $0) }
    }

    private func redisTime() async throws -> Int64 {
        let time = try await registry.redis.execute(["TIME"]).array ?? []
        guard time.count == 2, let seconds = time[0].integer, let micros = time[1].integer else {
            throw RedisError.unexpectedReply("TIME returned \(time)")
        }
        return seconds * 1000 + micros / 1000
    }
}
