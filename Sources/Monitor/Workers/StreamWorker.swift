import HeartbeatDomain
import Logging
import RedisAdapter
import ServiceLifecycle
import Synchronization

/// What a consumer group does with a batch of one bucket's stream.
protocol StreamBatchHandler: Sendable {
    /// The consumer group's name.
    static var group: String { get }
    /// How the group's entries are read and marked done (``StreamDelivery``).
    static var delivery: StreamDelivery { get }
    /// The bucket's stream.
    func stream(bucket: Int) -> String
    /// Stores what the entries carry. Only after it returns are they acknowledged (or the group's
    /// position moved past them) and trimmed.
    func handle(_ entries: [StreamEntry], bucket: Int, lease: Leadership.Lease) async throws
    /// ``StreamDelivery/pendingList``: runs before new entries are read from `stream` (not before
    /// claimed ones).
    func beforeReading(stream: String) async throws
    /// ``StreamDelivery/position``: runs before entries are read after `group`'s position.
    func beforeReading(stream: String, group: XInfoGroup) async throws
    /// Runs before each round of draining, while leading (upkeep).
    func prepare(_ lease: Leadership.Lease) async throws
    /// A round failed with `error` (already logged).
    func failed(_ error: any Error, lease: Leadership.Lease)
}

extension StreamBatchHandler {
    static var delivery: StreamDelivery { .pendingList }
    func beforeReading(stream: String) async throws {}
    func beforeReading(stream: String, group: XInfoGroup) async throws {}
    func prepare(_ lease: Leadership.Lease) async throws {}
    func failed(_ error: any Error, lease: Leadership.Lease) {}
}

/// Drains every bucket's stream with a consumer group for a ``StreamBatchHandler``: creates the
/// groups (again after Redis lost them), claims entries left pending (by this consumer before a
/// crash, or by a dead instance) before reading new ones, marks a batch done only after the
/// handler stored it, and trims what was marked done — never past the lowest entry still pending
/// in the group, because another instance (an old leader not yet aware it lost the lock) may hold
/// entries it read and has not stored, and a trimmed entry could not be claimed any more. How
/// entries are read and marked done is the handler's ``StreamBatchHandler/delivery``.
///
/// While leading it drains every `pollInterval`, and at once again after a round that found entries
/// (with ``lingers``: only after a round that found a full batch in some bucket).
final class StreamWorker<Handler: StreamBatchHandler>: Service {
    let redis: RedisClient
    let buckets: Range<Int>
    let consumer: String
    let handler: Handler
    let batchSize: Int
    /// Buckets drained at once (each handler call may hold a PostgreSQL connection).
    let parallelism: Int
    let leadership: Leadership
    let pollInterval: Duration
    /// A round that found entries but no full batch waits for the next poll instead of running
    /// again at once, so under a steady trickle batches grow and the per-batch costs are paid less
    /// often; and such rounds drain one bucket at a time (``parallelism`` only while a backlog is
    /// drained), so the work is spread over the poll instead of taking every core at once.
    let lingers: Bool
    /// The last round found a full batch (a backlog to drain).
    private let backlogged = Mutex(true)
    let logger: Logger
    /// Buckets whose consumer group exists (as far as this instance knows).
    private let groupsReady = Mutex<Set<Int>>([])
    /// Buckets failing while others drain: logged once per quiet period, like a failed round.
    private let partialFailures = Mutex(LeaderLoop.FailureLog(quietPeriod: .seconds(10)))

    init(
        redis: RedisClient, buckets: Range<Int>, consumer: String, handler: Handler, batchSize: Int, parallelism: Int = 1,
        leadership: Leadership, pollInterval: Duration, lingers: Bool = false, logger: Logger
    ) {
        self.redis = redis
        self.buckets = buckets
        self.consumer = consumer
        self.handler = handler
        self.batchSize = batchSize
        self.parallelism = max(1, parallelism)
        self.leadership = leadership
        self.pollInterval = pollInterval
        self.lingers = lingers
        self.logger = logger
    }

    func run() async throws {
        let loop = LeaderLoop(leadership: leadership, interval: pollInterval, name: "consumer group \(Handler.group)", logger: logger) {
            error, lease in self.handler.failed(error, lease: lease)
        }
        await loop.run { lease in
            try await self.handler.prepare(lease)
            let round = try await self.drain(lease)
            let full = round.fullest >= self.batchSize
            self.backlogged.withLock { $0 = full }
            return self.lingers ? full : round.entries > 0
        }
    }

    /// One batch from every bucket, `parallelism` buckets at a time. Returns the entries consumed,
    /// and the largest batch among them.
    ///
    /// Buckets fail alone: on a Redis Cluster with a primary down, its buckets' streams cannot be
    /// read while the others' can, so a bucket's error is handed to the handler and logged, and
    /// the other buckets are drained as usual. Throws (the first error) only when every bucket failed.
    func drain(_ lease: Leadership.Lease) async throws -> (entries: Int, fullest: Int) {
        var failures: [(bucket: Int, error: any Error)] = []
        var ready: [Int] = []
        for bucket in buckets {
            if groupsReady.withLock({ $0.contains(bucket) }) {
                ready.append(bucket)
                continue
            }
            do {
                try await redis.xgroupCreate(handler.stream(bucket: bucket), group: Handler.group)
                groupsReady.withLock { _ = $0.insert(bucket) }
                ready.append(bucket)
            } catch {
                failures.append((bucket, error))
            }
        }
        var drained = 0
        var fullest = 0
        await withTaskGroup(of: (Int, Result<Int, any Error>).self) { group in
            var pending = ready.makeIterator()
            let drain = { @Sendable (bucket: Int) async -> (Int, Result<Int, any Error>) in
                do {
                    return (bucket, .success(try await self.drainOnce(bucket: bucket, lease: lease)))
                } catch {
                    return (bucket, .failure(error))
                }
            }
            let width = lingers && !backlogged.withLock({ $0 }) ? 1 : parallelism
            for _ in 0..<width {
                guard let bucket = pending.next() else { break }
                group.addTask { await drain(bucket) }
            }
            while let (bucket, result) = await group.next() {
                switch result {
                case .success(let count):
                    drained += count
                    fullest = max(fullest, count)
                case .failure(let error): failures.append((bucket, error))
                }
                if leadership.holds(lease), let bucket = pending.next() {
                    group.addTask { await drain(bucket) }
                }
            }
        }
        for (bucket, error) in failures {
            // Redis lost the stream: create the group again
            if case RedisError.server(let message) = error, message.hasPrefix("NOGROUP") { groupsReady.withLock { _ = $0.remove(bucket) } }
        }
        guard let first = failures.first else { return (drained, fullest) }
        if failures.count == buckets.count { throw first.error }
        for (_, error) in failures { handler.failed(error, lease: lease) }
        let buckets = failures.map(\.bucket).sorted()
        let repeats = partialFailures.withLock { $0.shouldLog("\(buckets) \(first.error)", now: .now) }
        if let repeats {
            logger.warning(
                "consumer group \(Handler.group): buckets not drained, the others go on",
                metadata: ["buckets": "\(buckets)", "error": "\(first.error)", "repeats_unlogged": "\(repeats)"])
        }
        return (drained, fullest)
    }

    /// One batch of the bucket: pending entries claimed first, else new ones. Returns how many.
    func drainOnce(bucket: Int, lease: Leadership.Lease) async throws -> Int {
        switch Handler.delivery {
        case .pendingList: try await drainWithPendingList(bucket: bucket, lease: lease)
        case .position: try await drainAfterPosition(bucket: bucket, lease: lease)
        }
    }

    /// ``StreamDelivery/pendingList``: claimed entries, else `XREADGROUP`; then `XACK`.
    private func drainWithPendingList(bucket: Int, lease: Leadership.Lease) async throws -> Int {
        let stream = handler.stream(bucket: bucket)
        var entries = try await redis.xautoclaim(stream, group: Handler.group, consumer: consumer, count: batchSize).entries
        if entries.isEmpty {
            try await handler.beforeReading(stream: stream)
            entries = try await redis.xreadgroup(stream, group: Handler.group, consumer: consumer, count: batchSize)
        }
        return try await storeAndAcknowledge(entries, stream: stream, bucket: bucket, lease: lease)
    }

    /// ``StreamDelivery/position``: the entries after the group's position, read with `XRANGE`; once
    /// stored, the group moves past them (``RedisClient/advanceGroup(_:group:from:to:count:)``).
    /// Entries an earlier version left pending in the group go first, claimed and acknowledged.
    private func drainAfterPosition(bucket: Int, lease: Leadership.Lease) async throws -> Int {
        let stream = handler.stream(bucket: bucket)
        guard let group = try await redis.xinfoGroups(stream).first(where: { $0.name == Handler.group }) else {
            // Redis lost the stream or the group: `drain` creates the group again next round
            throw RedisError.server("NOGROUP no \(Handler.group) group on \(stream)")
        }
        if group.pending > 0 {
            let claimed = try await redis.xautoclaim(stream, group: Handler.group, consumer: consumer, count: batchSize).entries
            if !claimed.isEmpty { return try await storeAndAcknowledge(claimed, stream: stream, bucket: bucket, lease: lease) }
        }
        try await handler.beforeReading(stream: stream, group: group)
        let entries = try await redis.xrange(stream, after: group.lastDeliveredID, count: batchSize)
        // a lease that ended stores nothing more
        guard let last = entries.last, let through = StreamID(last.id), leadership.holds(lease) else { return 0 }
        try await handler.handle(entries, bucket: bucket, lease: lease)
        let moved = try await redis.advanceGroup(
            stream, group: Handler.group, from: group.lastDeliveredID, to: through, count: entries.count)
        if !moved {
            // stored all the same: the next round reads on from where the other instance left the group
            logger.info("consumer group \(Handler.group): another instance moved the group meanwhile", metadata: ["stream": "\(stream)"])
        }
        return entries.count
    }

    /// Hands `entries` to the handler, then acknowledges and trims them. Returns how many.
    private func storeAndAcknowledge(_ entries: [StreamEntry], stream: String, bucket: Int, lease: Leadership.Lease) async throws -> Int {
        // a lease that ended stores nothing more (the entries stay pending for the next leader)
        guard let last = entries.last, leadership.holds(lease) else { return 0 }
        try await handler.handle(entries, bucket: bucket, lease: lease)
        try await redis.xack(stream, group: Handler.group, ids: entries.map(\.id))
        // what is stored goes, so the stream holds only what is not stored yet
        if let through = StreamID(last.id) {
            let pending = try await redis.xpending(stream, group: Handler.group)
            try await redis.xtrim(stream, minID: Self.trimBound(after: through, lowestPending: pending.lowest))
        }
        return entries.count
    }

    /// Entries pending in the group and entries not yet delivered to it, over every bucket.
    func backlog() async throws -> (pending: Int, unread: Int) {
        var total = (pending: 0, unread: 0)
        for bucket in buckets {
            guard let group = try await redis.xinfoGroups(handler.stream(bucket: bucket)).first(where: { $0.name == Handler.group }) else { continue }
            total.pending += group.pending
            total.unread += group.lag ?? 0
        }
        return total
    }

    /// Where trimming may go: past `through`, but never past the lowest entry still pending.
    static func trimBound(after through: StreamID, lowestPending: StreamID?) -> StreamID {
        min(through.successor, lowestPending ?? through.successor)
    }
}
