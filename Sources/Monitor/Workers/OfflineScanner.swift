import Foundation
import HeartbeatDomain
import Logging
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

    let store: any LivenessStore
    let buckets: Range<Int>
    let leadership: Leadership
    let offlineAfter: Duration
    /// Recent Redis outages, added to `offlineAfter` for a while (``OutageCredit``).
    let outages: RedisOutages
    let scanInterval: Duration
    let batchSize: Int
    let metrics: MonitorMetrics
    let logger: Logger
    /// Shared with the ops API (release) and `/readyz`.
    let stormGuard: SharedStormGuard
    /// The lease epoch the storm guard's state belongs to.
    private let guardEpoch = Mutex(0)

    init(
        store: any LivenessStore, buckets: Range<Int>, leadership: Leadership, offlineAfter: Duration, outages: RedisOutages,
        scanInterval: Duration, batchSize: Int, stormGuard: SharedStormGuard, metrics: MonitorMetrics, logger: Logger
    ) {
        self.store = store
        self.buckets = buckets
        self.leadership = leadership
        self.offlineAfter = offlineAfter
        self.outages = outages
        self.scanInterval = scanInterval
        self.batchSize = batchSize
        self.metrics = metrics
        self.logger = logger
        self.stormGuard = stormGuard
    }

    func run() async throws {
        await LeaderLoop(leadership: leadership, interval: scanInterval, name: "offline scan", logger: logger).run { lease in
            _ = try await self.scan(lease)
            self.metrics.lastScan.record(Date().timeIntervalSince1970)
            return false
        }
    }

    /// One scan.
    func scan(_ lease: Leadership.Lease) async throws -> Report {
        let started = ContinuousClock.now
        defer { metrics.scanDuration.recordInterval(since: started) }
        // Redis just came back but the elector's probe has not seen it yet: the outage's length (the
        // devices' credit) is not known, and a scan now would count the outage as silence
        guard !outages.isOngoing else { return Report() }
        // silence the devices could not help (Redis out of reach) does not count
        let silenceAllowed = offlineAfter + outages.credit
        var report = Report()
        var perBucket: [Int: Int] = [:]
        var nowMs: Int64 = 0
        try await withThrowingTaskGroup(of: (Int, StaleCount).self) { group in
            for bucket in buckets {
                group.addTask { (bucket, try await self.store.countStale(bucket: bucket, silenceAllowed: silenceAllowed)) }
            }
            for try await (bucket, count) in group {
                perBucket[bucket] = count.stale
                report.stale += count.stale
                report.online += count.online
                nowMs = max(nowMs, count.nowMs)
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
                logger.critical(
                    "mass offline held: probably an ingest or network outage, not the devices",
                    metadata: [
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
        let cutoff = nowMs - silenceAllowed.milliseconds
        // buckets at once: on a Redis Cluster each is on its node, and the nodes work in parallel
        report.declaredOffline = try await withThrowingTaskGroup(of: Int.self) { group in
            for bucket in buckets where perBucket[bucket, default: 0] > 0 {
                group.addTask {
                    var declaredInBucket = 0
                    while self.leadership.holds(lease) {
                        let (declared, remaining) = try await self.store.declareOffline(bucket: bucket, cutoffMs: cutoff, limit: self.batchSize)
                        declaredInBucket += declared
                        if declared == 0 || remaining == 0 { break }
                    }
                    return declaredInBucket
                }
            }
            return try await group.reduce(0, +)
        }
        if report.declaredOffline > 0 {
            stormGuard.withLock { $0.recordDeclared(report.declaredOffline, nowMs: nowMs) }
            metrics.declaredOffline.increment(by: report.declaredOffline)
            logger.info("declared devices offline", metadata: ["count": "\(report.declaredOffline)"])
        }
        return report
    }
}
