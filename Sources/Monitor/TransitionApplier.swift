import Logging
import ServiceLifecycle
import Shared

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

    func run() async throws {
        var groupsReady = false
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            var worked = false
            if let lease = leadership.current {
                do {
                    if !groupsReady {
                        try await createGroups()
                        groupsReady = true
                    }
                    for bucket in keys.allBuckets where leadership.holds(lease) {
                        if try await drainOnce(bucket: bucket, lease: lease) > 0 { worked = true }
                    }
                } catch let error as RedisError {
                    if case .server(let message) = error, message.hasPrefix("NOGROUP") { groupsReady = false }
                    metrics.applyErrors.increment()
                    logger.error("applying transitions failed", metadata: ["error": "\(error)"])
                } catch {
                    metrics.applyErrors.increment()
                    if case PostgresError.connectionLost = error { leadership.revoke(epoch: lease.epoch) }
                    logger.error("applying transitions failed", metadata: ["error": "\(error)"])
                }
            }
            if !worked, !(await sleepUnlessShuttingDown(pollInterval)) { return }
        }
    }

    /// The smallest stream id after `id` (`ms-seq` → `ms-(seq+1)`).
    static func successor(of id: String) -> String? {
        let parts = id.split(separator: "-")
        guard parts.count == 2, let ms = UInt64(parts[0]), let seq = UInt64(parts[1]) else { return nil }
        return seq == UInt64.max ? "\(ms + 1)-0" : "\(ms)-\(seq + 1)"
    }

    /// Creates the consumer group on every bucket's stream (from the start, so nothing written
    /// before the first monitor ran is missed).
    func createGroups() async throws {
        for bucket in keys.allBuckets {
            let reply = try await redis.send(["XGROUP", "CREATE", keys.transitions(bucket: bucket), Self.group, "0", "MKSTREAM"])
            if case .error(let message) = reply, !message.hasPrefix("BUSYGROUP") { throw RedisError.server(message) }
        }
    }

    /// Applies one batch of the bucket: pending (claimed) entries first, then new ones.
    /// - Returns: how many entries were consumed.
    func drainOnce(bucket: Int, lease: Leadership.Lease) async throws -> Int {
        let stream = keys.transitions(bucket: bucket)
        var entries = StreamEntry.fromAutoClaim(try await redis.execute(
            ["XAUTOCLAIM", stream, Self.group, consumer, "0", "0-0", "COUNT", String(batchSize)]))
        let claimed = !entries.isEmpty
        if entries.isEmpty {
            entries = StreamEntry.fromRead(try await redis.execute(
                ["XREADGROUP", "GROUP", Self.group, consumer, "COUNT", String(batchSize), "STREAMS", stream, ">"]))
        }
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
        try await redis.execute(["XACK", stream, Self.group] + entries.map(\.id))
        // Nothing was pending before this read, and all of it is acknowledged now: everything up to
        // the last entry is applied and can go, so the stream does not grow with every flap.
        if !claimed, let last = entries.last, let next = Self.successor(of: last.id) {
            try await redis.execute(["XTRIM", stream, "MINID", next])
        }
        return entries.count
    }
}
