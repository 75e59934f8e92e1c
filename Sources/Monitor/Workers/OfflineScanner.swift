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
    ///
    /// Bucket by bucket as far as Redis goes: a bucket whose Redis is out of reach (on a cluster, a
    /// primary down) is skipped and its devices get the outage as credit afterwards, while the
    /// other buckets are scanned as usual. Throws only when no bucket could be counted.
    func scan(_ lease: Leadership.Lease) async throws -> Report {
        let started = ContinuousClock.now
        defer { metrics.scanDuration.recordInterval(since: started) }
        var report = Report()
        // per bucket counted: its stale devices and the cutoff of the silence allowed (silence the
        // devices could not help, Redis out of reach, does not count)
        var counted: [Int: (stale: Int, cutoffMs: Int64)] = [:]
        var nowMs: Int64 = 0
        var failures: [Int: String] = [:]
        // A bucket whose Redis just came back but whose probe has not seen it yet is left out: the
        // outage's length (its devices' credit) is not known, and a scan now would count it as silence
        let scanned = buckets.filter { !outages.isOngoing(bucket: $0) }
        guard !scanned.isEmpty else { return report }
        // Milliseconds, not a `Duration`, into and out of the child tasks: in release builds (Swift
        // 6.3) a `Duration` in a task group's result came out garbled (a trap in `components`).
        await withTaskGroup(of: (Int, Int64, Result<StaleCount, any Error>).self) { group in
            for bucket in scanned {
                let silenceAllowedMs = (offlineAfter + outages.credit(bucket: bucket)).milliseconds
                group.addTask {
                    do {
                        let count = try await self.store.countStale(bucket: bucket, silenceAllowed: .milliseconds(silenceAllowedMs))
                        return (bucket, silenceAllowedMs, .success(count))
                    } catch {
                        return (bucket, silenceAllowedMs, .failure(error))
                    }
                }
            }
            for await (bucket, silenceAllowedMs, result) in group {
                switch result {
                case .success(let count):
                    counted[bucket] = (count.stale, count.nowMs - silenceAllowedMs)
                    report.stale += count.stale
                    report.online += count.online
                    nowMs = max(nowMs, count.nowMs)
                case .failure(let error):
                    failures[bucket] = "\(error)"
                }
            }
        }
        if counted.isEmpty, let failure = failures.values.first { throw OfflineScanError.noBucketCounted(failure) }
        if !failures.isEmpty {
            logger.warning(
                "buckets not scanned: their Redis did not answer",
                metadata: ["buckets": "\(failures.keys.sorted())", "error": "\(failures.values.first ?? "")"])
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
        // buckets at once: on a Redis Cluster each is on its node, and the nodes work in parallel
        report.declaredOffline = await withTaskGroup(of: Int.self) { group in
            for (bucket, bucketCount) in counted where bucketCount.stale > 0 {
                let cutoff = bucketCount.cutoffMs
                group.addTask {
                    var declaredInBucket = 0
                    do {
                        while self.leadership.holds(lease) {
                            let (declared, remaining) = try await self.store.declareOffline(bucket: bucket, cutoffMs: cutoff, limit: self.batchSize)
                            declaredInBucket += declared
                            if declared == 0 || remaining == 0 { break }
                        }
                    } catch {
                        // the rest waits for the next scan; the other buckets go on
                        self.logger.warning("offline scan of a bucket stopped", metadata: ["bucket": "\(bucket)", "error": "\(error)"])
                    }
                    return declaredInBucket
                }
            }
            return await group.reduce(0, +)
        }
        if report.declaredOffline > 0 {
            stormGuard.withLock { $0.recordDeclared(report.declaredOffline, nowMs: nowMs) }
            metrics.declaredOffline.increment(by: report.declaredOffline)
            logger.info("declared devices offline", metadata: ["count": "\(report.declaredOffline)"])
        }
        return report
    }
}

/// Why a scan found nothing to go on.
enum OfflineScanError: Error, CustomStringConvertible {
    /// Every bucket's count failed (Redis out of reach); the first error.
    case noBucketCounted(String)

    var description: String {
        switch self {
        case .noBucketCounted(let error): "no bucket could be counted: \(error)"
        }
    }
}
