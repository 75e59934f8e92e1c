import Foundation
import HeartbeatDomain
import Logging
import RedisAdapter
import ServiceLifecycle
import Synchronization

/// Every scan interval, while leading: counts stale members of each bucket's online set, asks the
/// storm guard, and moves stale devices offline (with an `offline` transition each) in batches.
final class OfflineScanner: Service, Sendable {
    struct Report: Sendable, Equatable {
        var stale = 0
        var online = 0
        var declaredOffline = 0
        var decision: StormGuard.Decision?
    }

    let redis: RedisClient
    let keys: KeySchema
    let leadership: Leadership
    let offlineAfter: Duration
    /// Recent Redis outages, added to `offlineAfter` for a while (``OutageCredit``).
    let outages: RedisOutages
    let scanInterval: Duration
    let batchSize: Int
    let metrics: MonitorMetrics
    let logger: Logger
    /// Shared with the ops API (release) and `/readyz`.
    let stormGuard: Mutex<StormGuard>
    /// The lease epoch the storm guard's state belongs to.
    private let guardEpoch = Mutex(0)

    init(redis: RedisClient, keys: KeySchema, leadership: Leadership, offlineAfter: Duration, outages: RedisOutages,
         scanInterval: Duration, batchSize: Int, storm: StormGuard.Settings, metrics: MonitorMetrics, logger: Logger) {
        self.redis = redis
        self.keys = keys
        self.leadership = leadership
        self.offlineAfter = offlineAfter
        self.outages = outages
        self.scanInterval = scanInterval
        self.batchSize = batchSize
        self.metrics = metrics
        self.logger = logger
        self.stormGuard = Mutex(StormGuard(settings: storm, window: offlineAfter))
    }

    func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            if let lease = leadership.current {
                do {
                    _ = try await scan(lease)
                    metrics.lastScan.record(Double(Date().timeIntervalSince1970))
                } catch {
                    logger.error("offline scan failed", metadata: ["error": "\(error)"])
                }
            }
            guard await sleepUnlessShuttingDown(scanInterval) else { return }
        }
    }

    /// One scan.
    func scan(_ lease: Leadership.Lease) async throws -> Report {
        let started = ContinuousClock.now
        defer { metrics.scanDuration.recordInterval(since: started) }
        // silence the devices could not help (Redis out of reach) does not count
        let silenceAllowed = offlineAfter + outages.credit
        let afterMs = String(silenceAllowed.milliseconds)
        var report = Report()
        var perBucket = [Int](repeating: 0, count: keys.buckets)
        var nowMs: Int64 = 0
        try await withThrowingTaskGroup(of: (Int, [Int64]).self) { group in
            for bucket in keys.allBuckets {
                group.addTask {
                    let reply = try await self.redis.run(OfflineScanScript.count,
                        keys: [self.keys.online(bucket: bucket), self.keys.transitions(bucket: bucket)], arguments: [afterMs])
                    return (bucket, reply.array?.compactMap(\.integer) ?? [])
                }
            }
            for try await (bucket, values) in group {
                guard values.count == 3 else { throw RedisError.unexpectedReply("offline count returned \(values)") }
                perBucket[bucket] = Int(values[0])
                report.stale += Int(values[0])
                report.online += Int(values[1])
                nowMs = max(nowMs, values[2])
            }
        }
        // No grace after a leader change: liveness lives in Redis, written by the gateways, so a
        // monitor gap leaves no score stale and the new leader scans at once. A fleet-wide silence
        // (ingest down) is the storm guard's to hold.
        let newTerm = guardEpoch.withLock { epoch in
            defer { epoch = lease.epoch }
            return epoch != lease.epoch
        }
        if newTerm {
            // a new term starts with a clean guard: no stale hold or release from an earlier term
            stormGuard.withLock { $0 = StormGuard(settings: $0.settings, window: offlineAfter) }
        }
        metrics.devicesOnline.record(report.online)
        if report.stale > 0 { metrics.staleFound.increment(by: report.stale) }
        let decision = stormGuard.withLock { $0.decide(stale: report.stale, online: report.online, nowMs: nowMs) }
        report.decision = decision
        switch decision {
        case .hold(let devices, let started):
            metrics.stormHolding.record(devices)
            if started {
                metrics.stormTrips.increment()
                logger.critical("mass offline held: probably an ingest or network outage, not the devices", metadata: [
                    "stale": "\(report.stale)", "online": "\(report.online)",
                    "release": "POST /api/v1/fleet/release-hold",
                ])
            }
            return report
        case .proceedAfterHold(let end):
            metrics.stormHolding.record(0)
            logger.warning("mass offline hold ended", metadata: ["why": "\(end.rawValue)", "stale": "\(report.stale)"])
        case .proceed:
            break
        }
        let cutoff = String(nowMs - silenceAllowed.milliseconds)
        for bucket in keys.allBuckets where perBucket[bucket] > 0 {
            while leadership.holds(lease) {
                let reply = try await redis.run(OfflineScanScript.apply,
                    keys: [keys.online(bucket: bucket), keys.transitions(bucket: bucket)], arguments: [cutoff, String(batchSize)])
                let values = reply.array?.compactMap(\.integer) ?? []
                guard values.count == 2 else { throw RedisError.unexpectedReply("offline apply returned \(reply)") }
                report.declaredOffline += Int(values[0])
                if values[0] == 0 || values[1] == 0 { break }
            }
        }
        if report.declaredOffline > 0 {
            stormGuard.withLock { $0.recordDeclared(report.declaredOffline, nowMs: nowMs) }
            metrics.declaredOffline.increment(by: report.declaredOffline)
            logger.info("declared devices offline", metadata: ["count": "\(report.declaredOffline)"])
        }
        return report
    }
}
