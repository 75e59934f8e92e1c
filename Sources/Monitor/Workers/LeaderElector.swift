import AsyncAlgorithms
import Logging
import ServiceLifecycle

/// Elects the active monitor with a ``LeaderLock``. Standbys bid every `checkInterval`; the leader
/// checks its lock session as often and steps down at once when it fails. At shutdown the lock is
/// released so a standby takes over immediately.
///
/// The lock alone does not make a useful leader: every worker needs Redis too. A leader that has
/// not reached Redis for `redisTimeout` gives the lock up, and an instance bids for it only while
/// Redis answers, so a standby with a working Redis path takes over. On a cluster, reaching some
/// primaries counts: with one primary down (a failover in progress) every instance sees the same,
/// and handing over would only leave the healthy buckets without a leader. The same probe notes
/// Redis outages, per bucket (the scanner's credit: on a cluster, a primary's outage is its
/// buckets' alone), and restarts (its `run_id`, for the history writer).
struct LeaderElector: Service {
    let lock: any LeaderLock
    let liveness: any LivenessStore
    let instanceID: String
    let leadership: Leadership
    let checkInterval: Duration
    let redisTimeout: Duration
    /// Where the probes of Redis are recorded (the scanner credits devices with the outages).
    let outages: RedisOutages
    let redisRunID: RunIDWatch
    let metrics: MonitorMetrics
    let logger: Logger

    func run() async throws {
        var redisReachedAt = ContinuousClock.now
        defer { leadership.revoke() }
        await elect(redisReachedAt: &redisReachedAt)
        for await _ in AsyncTimerSequence(interval: checkInterval, clock: .continuous).cancelOnGracefulShutdown() {
            await elect(redisReachedAt: &redisReachedAt)
        }
        if leadership.isLeader {
            leadership.revoke()
            try? await lock.release()
            logger.notice("released the leader lock", metadata: ["instance": "\(instanceID)"])
        }
        metrics.leader.record(0)
        await lock.close()
    }

    /// One round: probe Redis, then check the lock (leader) or bid for it (standby).
    func elect(redisReachedAt: inout ContinuousClock.Instant) async {
        let probe = await liveness.probe()
        if probe.reachable { redisReachedAt = .now }
        if let runID = probe.runID { redisRunID.observe(runID) }
        if let outage = outages.record(probe) {
            logger.warning(
                "Redis reachable again; its devices get the outage on top of OFFLINE_AFTER for one OFFLINE_AFTER",
                metadata: ["outage": "\(outage)"])
        }
        do {
            if leadership.isLeader {
                try await lock.verify()  // the session (and so the lock) is alive
                if ContinuousClock.now - redisReachedAt > redisTimeout {
                    logger.error(
                        "giving up the leader lock: Redis unreachable",
                        metadata: [
                            "instance": "\(instanceID)", "for": "\(ContinuousClock.now - redisReachedAt)",
                        ])
                    leadership.revoke()
                    metrics.leader.record(0)
                    try await lock.release()
                }
            } else if probe.reachable, let session = try await lock.tryAcquire() {
                let lease = leadership.grant(session)
                metrics.leader.record(1)
                metrics.leaderTerms.increment()
                logger.notice("became the active monitor", metadata: ["instance": "\(instanceID)", "epoch": "\(lease.epoch)"])
            } else {
                metrics.leader.record(0)
            }
        } catch {
            if leadership.isLeader {
                logger.error("lost the leader lock", metadata: ["error": "\(error)"])
            } else {
                logger.warning("leader election: PostgreSQL unavailable", metadata: ["error": "\(error)"])
            }
            leadership.revoke()
            metrics.leader.record(0)
            await lock.close()
        }
    }
}
