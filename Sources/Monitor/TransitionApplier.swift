import HeartbeatDomain
import Logging
import PostgresAdapter
import RedisAdapter
import ServiceLifecycle

/// While leading, drains every bucket's transitions stream with a consumer group and applies each
/// batch in one PostgreSQL statement (`apply_transitions`: devices, status events and outbox rows
/// together), acknowledging the entries only after it committed. Entries left pending by a dead
/// instance, or by this one before a crash, are claimed first.
struct TransitionApplier: Service {
    static let group = "monitor"

    let redis: RedisClient
    let keys: KeySchema
    let leadership: Leadership
    let consumer: String
    let offlineAfter: Duration
    let batchSize: Int
    let pollInterval: Duration
    let metrics: MonitorMetrics
    let logger: Logger

    var stream: StreamConsumer { StreamConsumer(redis: redis, group: Self.group, consumer: consumer) }

    func run() async throws {
        var groupsReady = false
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            var worked = false
            if let lease = leadership.current {
                do {
                    if !groupsReady {
                        try await stream.createGroup(on: keys.allBuckets.map { keys.transitions(bucket: $0) })
                        groupsReady = true
                    }
                    for bucket in keys.allBuckets where leadership.holds(lease) {
                        if try await drainOnce(bucket: bucket, lease: lease) > 0 { worked = true }
                    }
                } catch {
                    if StreamConsumer.isMissingGroup(error) { groupsReady = false }
                    metrics.applyErrors.increment()
                    if case PostgresError.connectionLost = error { leadership.revoke(epoch: lease.epoch) }
                    logger.error("applying transitions failed", metadata: ["error": "\(error)"])
                }
            }
            if !worked, !(await sleepUnlessShuttingDown(pollInterval)) { return }
        }
    }

    /// Applies one batch of the bucket: pending (claimed) entries first, then new ones.
    /// - Returns: how many entries were consumed.
    func drainOnce(bucket: Int, lease: Leadership.Lease) async throws -> Int {
        let stream = keys.transitions(bucket: bucket)
        let (entries, _) = try await self.stream.nextBatch(stream, count: batchSize)
        guard !entries.isEmpty else { return 0 }
        let batch = TransitionBatch(entries: entries)
        if !batch.malformed.isEmpty {
            logger.error("skipping malformed transition entries", metadata: ["stream": "\(stream)", "ids": "\(batch.malformed)"])
        }
        if !batch.isEmpty {
            guard leadership.holds(lease) else { return 0 }
            let applied = try await lease.connection.query(TransitionBatch.sql, batch.parameters(bucket: bucket, offlineAfter: offlineAfter))
            let changed = Int(applied.scalar ?? "0") ?? 0
            metrics.transitionsApplied("online", batch.kinds.filter { $0 == "online" }.count)
            metrics.transitionsApplied("offline", batch.kinds.filter { $0 == "offline" }.count)
            logger.debug("applied transitions", metadata: ["bucket": "\(bucket)", "entries": "\(batch.ids.count)", "changes": "\(changed)"])
        }
        try await self.stream.acknowledge(entries, on: stream)
        // Applied entries go, so the stream does not grow with every flap (never past an entry
        // another instance still holds).
        if let last = entries.last { try await self.stream.trimAcknowledged(through: last.id, on: stream) }
        return entries.count
    }
}
