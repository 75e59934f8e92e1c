import HeartbeatDomain
import Logging
import Metrics
import RedisAdapter

/// Writes each bucket's history stream (read by a ``StreamWorker`` with the `history` group) into
/// PostgreSQL, and writes `devices.last_heartbeat` behind (each device at most once per
/// ``LastHeartbeatThrottle/intervalMs``).
///
/// The stream is capped (the gateway's `MAXLEN ~`); were the writer to fall behind for long enough
/// for the cap to be hit, the oldest unread rows are shed. That is the one place data may be lost,
/// so it is detected, counted and logged (``beforeReading(stream:group:)``).
struct HistoryWriter: StreamBatchHandler {
    static let group = "history"
    /// No pending list: Redis keeps no record per row in flight (~1 µs per heartbeat of its time).
    /// A batch handed over twice (stored, then a crash before the group moved) is told apart by
    /// its rows' `entry_id`, and readers skip the copy.
    static let delivery = StreamDelivery.position

    let keys: KeySchema
    let redis: RedisClient
    let store: any HistoryStore
    let retentionDays: Int
    /// Published outbox rows, status events and replay keys are purged with the partitions.
    let retention: RetentionPolicy
    /// The Redis `run_id` as the leader elector's probes saw it (``rebaselineReadCounts()``).
    let redisRunID: RunIDWatch
    let lastHeartbeats: LastHeartbeatThrottle
    let metrics: MonitorMetrics
    let logger: Logger
    private let maintenance = Cadence()

    init(
        keys: KeySchema, redis: RedisClient, store: any HistoryStore, retentionDays: Int, retention: RetentionPolicy,
        redisRunID: RunIDWatch, lastHeartbeats: LastHeartbeatThrottle, metrics: MonitorMetrics, logger: Logger
    ) {
        self.keys = keys
        self.redis = redis
        self.store = store
        self.retentionDays = retentionDays
        self.retention = retention
        self.redisRunID = redisRunID
        self.lastHeartbeats = lastHeartbeats
        self.metrics = metrics
        self.logger = logger
    }

    func stream(bucket: Int) -> String { keys.history(bucket: bucket) }

    /// Hourly partition upkeep and retention; after a Redis restart, the read counts set right.
    func prepare(_ lease: Leadership.Lease) async throws {
        if maintenance.isDue(every: .seconds(3600)) {
            try await maintain()
            maintenance.done()
        }
        // the elector's probe notes restarts every second or so; this round must not read before it.
        // With part of a cluster out of reach there is no whole run id: its buckets fail this round
        // anyway, and the restart shows once all of it answers again.
        if let runID = try? await redis.serverRunID() { redisRunID.observe(runID) }
        if redisRunID.rebaselineDue { try await rebaselineReadCounts() }
    }

    func handle(_ entries: [StreamEntry], bucket: Int, lease: Leadership.Lease) async throws {
        let batch = HistoryBatch(entries: entries, bucket: bucket)
        if batch.unreadable > 0 { metrics.historyUnreadable.increment(by: batch.unreadable) }
        guard !batch.isEmpty else { return }
        try await store.write(batch, lease: lease)
        metrics.historyWritten.increment(by: batch.receivedAt.count)
        let due = lastHeartbeats.due(zip(batch.devices, batch.receivedAt))
        guard !due.isEmpty else { return }
        do {
            try await store.recordLastHeartbeats(due)
            lastHeartbeats.written(due)
        } catch {
            logger.warning("last heartbeat write-behind failed; the next batch carries it", metadata: ["error": "\(error)"])
        }
    }

    /// Partitions ahead and retention behind.
    func maintain() async throws {
        let dropped = try await store.maintainPartitions(retentionDays: retentionDays)
        if dropped > 0 { logger.notice("dropped history partitions past retention", metadata: ["count": "\(dropped)"]) }
        let rows = try await store.purge(retention)
        if rows > 0 {
            metrics.retentionPurged.increment(by: rows)
            logger.notice("purged outbox rows and status events past retention", metadata: ["rows": "\(rows)"])
        }
    }

    /// Entries the cap trimmed before this writer read them. Unread entries (the group's `lag`)
    /// are all still in the stream unless some were shed, because the writer only trims what it
    /// has written: `lag > length` means at least `lag - length` rows were lost. The lag was read
    /// first (`group`, by the worker): a heartbeat added between the two reads then only makes the
    /// stream longer (the other way round it made lag = length + 1, a false alarm). After Redis
    /// reloads its data the lag is not exact; ``rebaselineReadCounts()`` sets it right before this
    /// runs again.
    func beforeReading(stream: String, group: XInfoGroup) async throws {
        let info = try await redis.xinfoStream(stream)
        guard let lag = group.lag, lag > info.length else { return }
        // Redis may have restarted since this round's check in `prepare`: its lag is then not
        // exact, and the next round sets it right before judging (a test under load saw this)
        if let runID = try? await redis.serverRunID() { redisRunID.observe(runID) }
        if redisRunID.rebaselineDue { return }
        metrics.historyShed.increment(by: lag - info.length)
        logger.error(
            "history stream cap hit: rows were shed before they reached PostgreSQL",
            metadata: ["stream": "\(stream)", "rows_lost": "\(lag - info.length)", "last_read": "\(group.lastDeliveredID)"])
        // count the lost entries as read so the same loss is reported once (the position stays)
        try await redis.xgroupSetID(stream, group: Self.group, id: group.lastDeliveredID, entriesRead: info.entriesAdded - info.length)
    }

    /// Sets each history group's count of entries read from what its stream holds: Redis does not
    /// keep that count exactly across an AOF reload, and an inflated lag would report rows as shed
    /// that are all in PostgreSQL.
    func rebaselineReadCounts() async throws {
        for bucket in keys.allBuckets {
            let stream = keys.history(bucket: bucket)
            // a stream Redis lost has no group to set right (it is made again with its first entry)
            guard let group = try await redis.xinfoGroups(stream).first(where: { $0.name == Self.group }) else { continue }
            let info = try await redis.xinfoStream(stream)
            // entries at or before the last delivered one are read (pending or written, not trimmed yet): few
            let read = try await redis.xrangeCount(stream, from: "-", to: group.lastDeliveredID)
            let unread = max(0, info.length - read)
            try await redis.xgroupSetID(stream, group: Self.group, id: group.lastDeliveredID, entriesRead: info.entriesAdded - unread)
        }
        redisRunID.rebaselined()  // only now: a pass cut short is done again
        logger.notice("Redis restarted: history groups' read counts set from the streams")
    }
}
