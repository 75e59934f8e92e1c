import Foundation
import HeartbeatDomain
import Logging
import Metrics
import PostgresAdapter
import RedisAdapter
import ServiceLifecycle

/// While leading, drains the bucket history streams (consumer group `history`) into the
/// day-partitioned `heartbeat_history` table, one fenced `COPY` per batch, acknowledging after
/// commit, and keeps `devices.last_heartbeat` current (write-behind). Keeps partitions ahead of
/// time, drops those past `HISTORY_RETENTION_DAYS` and purges other tables past their retention.
///
/// The history streams are capped (`HISTORY_STREAM_MAX_LENGTH`, set by the gateway): when
/// PostgreSQL is away long enough for the cap to be hit, the oldest unread rows are shed. That is
/// the one place data may be lost, so it is detected, counted and logged.
struct HistoryWriter: Service {
    static let group = "history"

    let redis: RedisClient
    let keys: KeySchema
    let leadership: Leadership
    let db: PostgresPool
    let consumer: String
    let retentionDays: Int
    /// Published outbox rows, status events and replay keys are purged with the partitions.
    let retention: RetentionPolicy
    let batchSize: Int
    /// Buckets written concurrently (keep below the pool's size so the ops API keeps a connection).
    var parallelism = 3
    let pollInterval: Duration
    let logger: Logger

    var stream: StreamConsumer { StreamConsumer(redis: redis, group: Self.group, consumer: consumer) }
    let written = Counter(label: "monitor_history_rows_written_total")
    /// Rows lost to the history stream cap before they were written (at least this many).
    let shed = Counter(label: "monitor_history_stream_overflow_total")
    /// Entries that could not be read (not a device id, time and payload): skipped, never retried.
    let unreadable = Counter(label: "monitor_history_rows_unreadable_total")
    let purged = Counter(label: "monitor_retention_purged_rows_total")
    /// The Redis `run_id` last seen, to notice a restart (``rebaselineReadCounts()``).
    let redisRunID = RunIDWatch()

    func run() async throws {
        var groupsReady = false
        var lastMaintenance: ContinuousClock.Instant?
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            var worked = false
            // standbys watch too: the instance that leads after a Redis restart may not have led before it
            await watchRedisRestarts()
            if let lease = leadership.current {
                do {
                    if lastMaintenance.map({ ContinuousClock.now - $0 > .seconds(3600) }) ?? true {
                        try await maintainPartitions()
                        lastMaintenance = .now
                    }
                    if !groupsReady {
                        try await stream.createGroup(on: keys.allBuckets.map { keys.history(bucket: $0) })
                        groupsReady = true
                    }
                    if redisRunID.rebaselineDue { try await rebaselineReadCounts() }
                    if try await drainBuckets(lease) > 0 { worked = true }
                } catch {
                    if StreamConsumer.isMissingGroup(error) { groupsReady = false }
                    logger.error("history writer failed", metadata: ["error": "\(error)"])
                }
            }
            if !worked, !(await sleepUnlessShuttingDown(pollInterval)) { return }
        }
    }

    /// Drains one batch of every bucket, `parallelism` buckets at a time (each on its own pool
    /// connection): one bucket at a time left the writer waiting on round trips at ~23k rows/s.
    func drainBuckets(_ lease: Leadership.Lease) async throws -> Int {
        try await withThrowingTaskGroup(of: Int.self) { group in
            var buckets = keys.allBuckets.makeIterator()
            for _ in 0..<parallelism {
                guard let bucket = buckets.next() else { break }
                group.addTask { try await drainOnce(bucket: bucket, lease: lease) }
            }
            var drained = 0
            while let count = try await group.next() {
                drained += count
                if leadership.holds(lease), let bucket = buckets.next() { group.addTask { try await drainOnce(bucket: bucket, lease: lease) } }
            }
            return drained
        }
    }

    /// Partitions from yesterday to three days ahead; drops days past retention, and purges the
    /// other tables' rows past theirs.
    func maintainPartitions() async throws {
        try await db.query("SELECT ensure_history_partition(d::date) FROM generate_series(current_date - 1, current_date + 3, '1 day') d")
        let dropped = try await db.query("SELECT drop_history_partitions_before(current_date - $1::int)", [String(retentionDays)]).scalar
        if let dropped, dropped != "0" { logger.notice("dropped history partitions past retention", metadata: ["count": "\(dropped)"]) }
        let rows = try await retention.purge(db)
        if rows > 0 {
            purged.increment(by: rows)
            logger.notice("purged outbox rows and status events past retention", metadata: ["rows": "\(rows)"])
        }
    }

    /// Writes one batch of the bucket. Returns how many entries were consumed.
    func drainOnce(bucket: Int, lease: Leadership.Lease) async throws -> Int {
        let stream = keys.history(bucket: bucket)
        let (entries, _) = try await self.stream.nextBatch(stream, count: batchSize) { try await detectShedding(stream) }
        guard !entries.isEmpty else { return 0 }
        let batch = HistoryBatch(entries: entries, bucket: bucket)
        if batch.unreadable > 0 { unreadable.increment(by: batch.unreadable) }
        if !batch.isEmpty {
            // fenced: an instance that lost the lock (and does not know yet) writes nothing
            try await db.query("SELECT assert_leader($1::int)", [lease.backendPID])
            do {
                try await db.copyIn(HistoryBatch.copySQL, data: batch.data)
            } catch let error as PostgresError {
                // 23514: no partition for a row (a day not created yet); create it and retry once
                guard case .queryFailed("23514", _) = error else { throw error }
                try await db.query("""
                    SELECT ensure_history_partition((to_timestamp(t / 1000.0) AT TIME ZONE 'UTC')::date)
                    FROM (SELECT DISTINCT unnest($1::bigint[]) / 86400000 * 86400000 AS t) days
                    """, [PostgresArray.plain(batch.receivedAt.map(String.init))])
                try await db.copyIn(HistoryBatch.copySQL, data: batch.data)
            }
            written.increment(by: batch.receivedAt.count)
            await recordLastHeartbeats(batch)
        }
        try await self.stream.acknowledge(entries, on: stream)
        // Written entries go, so the stream holds only what is not in PostgreSQL yet instead of
        // growing to its cap (never past an entry another instance still holds).
        if let last = entries.last { try await self.stream.trimAcknowledged(through: last.id, on: stream) }
        return entries.count
    }

    /// Write-behind of `devices.last_heartbeat`: the newest heartbeat per device of the batch, so
    /// that PostgreSQL (the device list, anything reading it, the registry re-seed) follows Redis
    /// within a batch. Rows the applier holds locked are skipped (it sets `last_heartbeat` itself),
    /// so this never waits on or deadlocks with a status change; a failure only delays the value
    /// to the next batch.
    private func recordLastHeartbeats(_ batch: HistoryBatch) async {
        let newest = batch.newestPerDevice
        do {
            try await db.query("""
                UPDATE devices d SET last_heartbeat = to_timestamp(v.ms / 1000.0)
                FROM unnest($1::uuid[], $2::bigint[]) AS v(id, ms)
                WHERE d.id = v.id AND d.id IN (SELECT id FROM devices WHERE id = ANY($1::uuid[]) FOR UPDATE SKIP LOCKED)
                  AND (d.last_heartbeat IS NULL OR d.last_heartbeat < to_timestamp(v.ms / 1000.0))
                """, [PostgresArray.plain(newest.map(\.key.string)), PostgresArray.plain(newest.map { String($0.value) })])
        } catch {
            logger.warning("last heartbeat write-behind failed; the next batch carries it", metadata: ["error": "\(error)"])
        }
    }

    /// Entries the cap trimmed before this writer read them. Unread entries (the group's `lag`)
    /// are all still in the stream unless some were shed, because the writer only trims what it
    /// has written: `lag > length` means at least `lag - length` rows were lost. The lag is read
    /// first: a heartbeat added between the two reads then only makes the stream longer (the other
    /// way round it made lag = length + 1, a false alarm). After Redis reloads its data the lag is
    /// not exact; ``rebaselineReadCounts()`` sets it right before this runs again.
    private func detectShedding(_ stream: String) async throws {
        guard let groups = try await redis.execute(["XINFO", "GROUPS", stream]).array,
            let info = try await redis.execute(["XINFO", "STREAM", stream]).array,
            let length = Self.field("length", in: info)?.integer,
            let added = Self.field("entries-added", in: info)?.integer
        else { return }
        for group in groups {
            let fields = group.array ?? []
            guard Self.field("name", in: fields)?.string == Self.group,
                let delivered = Self.field("last-delivered-id", in: fields)?.string,
                let lag = Self.field("lag", in: fields)?.integer, lag > length
            else { continue }
            shed.increment(by: Int(lag - length))
            logger.error("history stream cap hit: rows were shed before they reached PostgreSQL",
                         metadata: ["stream": "\(stream)", "rows_lost": "\(lag - length)", "last_read": "\(delivered)"])
            // count the lost entries as read so the same loss is reported once
            try await redis.execute(["XGROUP", "SETID", stream, Self.group, delivered, "ENTRIESREAD", String(added - length)])
        }
    }

    /// Notes a Redis restart (its `run_id` changed), so the leader sets the history groups' read
    /// counts from the streams (``rebaselineReadCounts()``) before it looks for shed rows again.
    private func watchRedisRestarts() async {
        guard let info = try? await redis.execute(["INFO", "server"]).string,
            let line = info.split(whereSeparator: \.isNewline).first(where: { $0.hasPrefix("run_id:") })
        else { return }
        redisRunID.observe(String(line.dropFirst("run_id:".count)))
    }

    /// Sets each history group's count of entries read from what its stream holds: Redis does not
    /// keep that count exactly across an AOF reload, and an inflated lag would report rows as shed
    /// that are all in PostgreSQL.
    private func rebaselineReadCounts() async throws {
        for bucket in keys.allBuckets {
            let stream = keys.history(bucket: bucket)
            guard let info = try await redis.execute(["XINFO", "STREAM", stream]).array,
                let length = Self.field("length", in: info)?.integer,
                let added = Self.field("entries-added", in: info)?.integer,
                let groups = try await redis.execute(["XINFO", "GROUPS", stream]).array,
                let delivered = groups.lazy.map({ $0.array ?? [] }).first(where: { Self.field("name", in: $0)?.string == Self.group })
                    .flatMap({ Self.field("last-delivered-id", in: $0)?.string })
            else { continue }
            // entries at or before the last delivered one are read (pending or written, not trimmed yet): few
            let read = try await redis.execute(["XRANGE", stream, "-", delivered]).array?.count ?? 0
            let unread = max(0, Int(length) - read)
            try await redis.execute(["XGROUP", "SETID", stream, Self.group, delivered, "ENTRIESREAD", String(Int(added) - unread)])
        }
        redisRunID.rebaselined()  // only now: a pass cut short is done again
        logger.notice("Redis restarted: history groups' read counts set from the streams")
    }

    /// The value after `name` in a flat `XINFO` reply.
    private static func field(_ name: String, in fields: [RedisValue]) -> RedisValue? {
        guard let index = fields.firstIndex(of: .string(name)), index + 1 < fields.count else { return nil }
        return fields[index + 1]
    }
}
