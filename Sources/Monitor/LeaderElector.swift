import Logging
import PostgresAdapter
import RedisAdapter
import ServiceLifecycle

/// Elects the active monitor with a PostgreSQL session-level advisory lock held on a dedicated
/// connection. Standbys retry; the leader checks its session every `checkInterval` and steps down
/// at once when it fails. At shutdown the lock is released so a standby takes over immediately.
///
/// The lock alone does not make a useful leader: every worker needs Redis too. A leader that has
/// not reached Redis for `redisTimeout` gives the lock up, and an instance bids for it only while
/// Redis answers, so a standby with a working Redis path takes over.
struct LeaderElector: Service {
    static let lockKey: Int64 = 7_220_001

    let postgresURL: String
    let redis: RedisClient
    let instanceID: String
    let leadership: Leadership
    let checkInterval: Duration
    let redisTimeout: Duration
    /// Where the probes of Redis are recorded (the scanner credits devices with the outages).
    let outages: RedisOutages
    let metrics: MonitorMetrics
    let logger: Logger

    func run() async throws {
        var connection: PostgresConnection?
        var redisReachedAt = ContinuousClock.now
        defer { leadership.revoke() }
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            let redisOK = await redisAnswers()
            if redisOK {
                redisReachedAt = .now
                if let outage = outages.reached() {
                    logger.warning("Redis reachable again; devices get the outage on top of OFFLINE_AFTER for one OFFLINE_AFTER",
                                   metadata: ["outage": "\(outage)"])
                }
            } else {
                outages.missed()
            }
            do {
                let conn: PostgresConnection
                if let connection, !connection.isBroken {
                    conn = connection
                } else {
                    conn = try await PostgresConnection.connect(url: postgresURL, applicationName: "hbm-leader-" + instanceID.prefix(40))
                    connection = conn
                }
                if leadership.isLeader {
                    try await conn.query("SELECT 1")  // the session (and so the lock) is alive
                    if ContinuousClock.now - redisReachedAt > redisTimeout {
                        logger.error("giving up the leader lock: Redis unreachable", metadata: [
                            "instance": "\(instanceID)", "for": "\(ContinuousClock.now - redisReachedAt)",
                        ])
                        leadership.revoke()
                        metrics.leader.record(0)
                        try await conn.query("SELECT pg_advisory_unlock($1)", [String(Self.lockKey)])
                    }
                } else if redisOK, try await conn.query("SELECT pg_try_advisory_lock($1)", [String(Self.lockKey)]).scalar == "t" {
                    let pid = try await conn.query("SELECT pg_backend_pid()").scalar ?? "0"
                    let lease = leadership.grant(conn, backendPID: pid)
                    metrics.leader.record(1)
                    metrics.leaderTerms.increment()
                    logger.notice("became the active monitor", metadata: ["instance": "\(instanceID)", "epoch": "\(lease.epoch)"])
                } else {
                    metrics.leader.record(0)
                }
            } catch {
                if leadership.isLeader { logger.error("lost the leader lock", metadata: ["error": "\(error)"]) } else {
                    logger.warning("leader election: PostgreSQL unavailable", metadata: ["error": "\(error)"])
                }
                leadership.revoke()
                metrics.leader.record(0)
                await connection?.close()
                connection = nil
            }
            guard await sleepUnlessShuttingDown(checkInterval) else { break }
        }
        if leadership.isLeader, let connection {
            leadership.revoke()
            _ = try? await connection.query("SELECT pg_advisory_unlock($1)", [String(Self.lockKey)])
            logger.notice("released the leader lock", metadata: ["instance": "\(instanceID)"])
        }
        metrics.leader.record(0)
        await connection?.close()
    }

    /// True when Redis answers a PING (within the client's timeout).
    private func redisAnswers() async -> Bool {
        (try? await redis.execute(["PING"])) == .string("PONG")
    }
}
