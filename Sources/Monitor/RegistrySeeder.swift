import Logging
import ServiceLifecycle
import Shared

/// Redis is a cache of the registry; PostgreSQL is the truth. While leading, this checks every
/// scan interval for the marker it leaves in Redis; when the marker is gone (Redis restarted
/// without persistence, or failed over to an empty replica), it writes every device's token hash
/// and playlist back, and puts the devices PostgreSQL knows as online back into the online sets
/// (with their last heartbeat, so silent ones are declared offline as usual).
struct RegistrySeeder: Service {
    static let marker = "hb:registry:seeded"

    let db: PostgresPool
    let registry: DeviceRegistryCache
    let leadership: Leadership
    let interval: Duration
    let logger: Logger

    func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            if leadership.isLeader {
                do {
                    if try await registry.redis.execute(["EXISTS", Self.marker]) == .integer(0) {
                        let count = try await seed()
                        logger.notice("re-seeded the Redis registry from PostgreSQL", metadata: ["devices": "\(count)"])
                    }
                } catch {
                    logger.error("registry re-seed failed", metadata: ["error": "\(error)"])
                }
            }
            guard await sleepUnlessShuttingDown(interval) else { return }
        }
    }

    /// Writes every registered device into Redis. Returns how many.
    func seed() async throws -> Int {
        var after = "00000000-0000-0000-0000-000000000000"
        var total = 0
        while true {
            let rows = try await db.query("""
                SELECT id, token_hash, assigned_playlist, status, (extract(epoch FROM last_heartbeat) * 1000)::bigint
                FROM devices WHERE id > $1::uuid AND token_hash IS NOT NULL ORDER BY id LIMIT 1000
                """, [after]).rows
            guard let last = rows.last?[0] else { break }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for row in rows {
                    guard let id = row[0].flatMap({ DeviceID($0) }), let hash = row[1] else { continue }
                    group.addTask {
                        try await registry.write(device: id, tokenHash: hash, playlist: row[2])
                        if row[3] == "online", let lastHeartbeat = row[4] {
                            let keys = registry.keys
                            try await registry.redis.execute(["ZADD", keys.online(bucket: keys.bucket(of: id)), "NX", lastHeartbeat, id.string])
                        }
                    }
                }
                try await group.waitForAll()
            }
            total += rows.count
            after = last
        }
        try await registry.redis.execute(["SET", Self.marker, "1"])
        return total
    }
}
