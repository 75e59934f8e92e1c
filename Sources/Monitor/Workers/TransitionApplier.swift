import HeartbeatDomain
import Logging
import PostgresAdapter
import RedisAdapter

/// Applies each bucket's transitions (read by a ``StreamWorker`` with the `monitor` group) to
/// PostgreSQL in one statement per batch: devices, status events and outbox rows together. A
/// device's transitions are all in its bucket, and a bucket's batches are applied one after
/// another, so buckets can be applied in parallel without reordering any device's changes.
struct TransitionApplier: StreamBatchHandler {
    static let group = "monitor"

    let keys: KeySchema
    let store: any TransitionStore
    let leadership: Leadership
    let offlineAfter: Duration
    let metrics: MonitorMetrics
    let logger: Logger

    func stream(bucket: Int) -> String { keys.transitions(bucket: bucket) }

    func handle(_ entries: [StreamEntry], bucket: Int, lease: Leadership.Lease) async throws {
        let batch = TransitionBatch(entries: entries)
        if !batch.malformed.isEmpty {
            logger.error("skipping malformed transition entries", metadata: ["bucket": "\(bucket)", "ids": "\(batch.malformed)"])
        }
        guard !batch.isEmpty else { return }
        let changed = try await store.apply(batch, bucket: bucket, offlineAfter: offlineAfter, lease: lease)
        metrics.transitionsApplied("online", batch.kinds.filter { $0 == "online" }.count)
        metrics.transitionsApplied("offline", batch.kinds.filter { $0 == "offline" }.count)
        logger.debug("applied transitions", metadata: ["bucket": "\(bucket)", "entries": "\(batch.ids.count)", "changes": "\(changed)"])
    }

    func failed(_ error: any Error, lease: Leadership.Lease) {
        metrics.applyErrors.increment()
        // the fence refused the write: the lock session is gone, and the lock with it
        if let error = error as? PostgresError, error.sqlState == .notLeader { leadership.revoke(epoch: lease.epoch) }
    }
}
