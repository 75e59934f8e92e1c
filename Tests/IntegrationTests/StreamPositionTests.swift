import HeartbeatDomain
import Logging
import RedisAdapter
import Synchronization
import Testing

@testable import Monitor

/// ``StreamDelivery/position`` (the history writer's) on a real Redis: the group moves past a batch
/// only once it is stored, never while another instance moved it or holds pending entries, and
/// entries an earlier version left pending are stored first.
@Suite struct StreamPositionTests {
    /// Records the batches it stored; `onHandle` runs first with the call's number and may throw (a
    /// failed store).
    final class PositionHandler: StreamBatchHandler {
        static let group = HistoryWriter.group
        static let delivery = StreamDelivery.position
        let key: String
        let batches = Mutex<[[String]]>([])
        let calls = Mutex(0)
        let onHandle: @Sendable (Int) async throws -> Void

        init(key: String, onHandle: @escaping @Sendable (_ call: Int) async throws -> Void = { _ in }) {
            self.key = key
            self.onHandle = onHandle
        }

        func stream(bucket: Int) -> String { key }
        func handle(_ entries: [StreamEntry], bucket: Int, lease: Leadership.Lease) async throws {
            try await onHandle(
                calls.withLock { call in
                    defer { call += 1 }
                    return call
                })
            batches.withLock { $0.append(entries.map(\.id)) }
        }
    }

    static let key = "hb:{0}:history"

    /// A Redis whose history stream holds `entries` entries (ids `1-1` … `1-n`), with the group on it.
    static func stream(entries: Int) async throws -> (RedisServer, RedisClient) {
        let server = try await RedisServer.start()
        let redis = server.client()
        try await redis.xgroupCreate(key, group: HistoryWriter.group)
        for index in 1...entries { try await redis.execute(["XADD", key, "1-\(index)", "d", "device-\(index)"]) }
        return (server, redis)
    }

    static func worker(_ redis: RedisClient, _ handler: PositionHandler, batchSize: Int = 5) -> (StreamWorker<PositionHandler>, Leadership.Lease) {
        let leadership = Leadership()
        let lease = leadership.grant(.init(backendPID: 0))
        let worker = StreamWorker(
            redis: redis, buckets: 0..<1, consumer: "leader", handler: handler, batchSize: batchSize,
            leadership: leadership, pollInterval: .seconds(1), logger: Logger(label: "test"))
        return (worker, lease)
    }

    static func group(_ redis: RedisClient) async throws -> XInfoGroup {
        try #require(try await redis.xinfoGroups(key).first { $0.name == HistoryWriter.group })
    }

    @Test func theGroupMovesPastABatchOnlyOnceItIsStored() async throws {
        let (server, redis) = try await Self.stream(entries: 12)
        // the first store fails (PostgreSQL down, say): nothing moves, and the batch comes again
        let handler = PositionHandler(key: Self.key) { call in
            if call == 0 { throw TestFailure("store failed") }
        }
        let (worker, lease) = Self.worker(redis, handler)
        await #expect(throws: TestFailure.self) { try await worker.drainOnce(bucket: 0, lease: lease) }
        var group = try await Self.group(redis)
        #expect(group.lastDeliveredID == "0-0" && group.lag == 12 && group.pending == 0)
        #expect(try await redis.execute(["XLEN", Self.key]).integer == 12)

        #expect(try await worker.drainOnce(bucket: 0, lease: lease) == 5)
        group = try await Self.group(redis)
        #expect(group.lastDeliveredID == "1-5" && group.entriesRead == 5 && group.lag == 7 && group.pending == 0)
        #expect(try await redis.execute(["XLEN", Self.key]).integer == 7, "stored entries stay in the stream")
        #expect(try await worker.drainOnce(bucket: 0, lease: lease) == 5)
        #expect(try await worker.drainOnce(bucket: 0, lease: lease) == 2)
        #expect(try await worker.drainOnce(bucket: 0, lease: lease) == 0)
        #expect(handler.batches.withLock { $0 } == [(1...5), (6...10), (11...12)].map { $0.map { "1-\($0)" } })
        group = try await Self.group(redis)
        #expect(group.lastDeliveredID == "1-12" && group.entriesRead == 12 && group.lag == 0 && group.pending == 0)
        #expect(try await redis.execute(["XLEN", Self.key]).integer == 0)
        await redis.shutdown()
        await server.stop()
    }

    /// An instance that lost the lock and does not know it yet stores a batch while the new leader
    /// moves the group on: the old one's move is refused, so it can neither send the group back
    /// (the new leader would store rows twice) nor past rows nobody stored, nor trim them.
    @Test func aGroupMovedByAnotherInstanceIsLeftWhereItIs() async throws {
        let (server, redis) = try await Self.stream(entries: 10)
        let handler = PositionHandler(key: Self.key) { call in
            // while this instance stores 1-1…1-5, the new leader stores 1-1…1-3 and moves the group
            if call == 0 { try await redis.xgroupSetID(Self.key, group: HistoryWriter.group, id: "1-3", entriesRead: 3) }
        }
        let (worker, lease) = Self.worker(redis, handler)
        #expect(try await worker.drainOnce(bucket: 0, lease: lease) == 5)
        let group = try await Self.group(redis)
        #expect(group.lastDeliveredID == "1-3" && group.entriesRead == 3)
        #expect(try await redis.execute(["XLEN", Self.key]).integer == 10, "trimmed by an instance whose move was refused")
        // the next round reads on from where the group is: 1-4 and 1-5 come twice, nothing is skipped
        #expect(try await worker.drainOnce(bucket: 0, lease: lease) == 5)
        #expect(handler.batches.withLock { $0.last } == (4...8).map { "1-\($0)" })
        await redis.shutdown()
        await server.stop()
    }

    /// An instance of an earlier version read entries with `XREADGROUP` and died before `XACK`:
    /// they are stored first, acknowledged, and only then does reading go on after the position.
    @Test func entriesAnEarlierVersionLeftPendingAreStoredFirst() async throws {
        let (server, redis) = try await Self.stream(entries: 10)
        let held = try await redis.xreadgroup(Self.key, group: HistoryWriter.group, consumer: "earlier-version", count: 4)
        #expect(held.map(\.id) == (1...4).map { "1-\($0)" })
        // while they are pending, the group is not moved and nothing is trimmed
        #expect(try await redis.advanceGroup(Self.key, group: HistoryWriter.group, from: "1-4", to: StreamID(ms: 1, seq: 6), count: 2) == false)
        #expect(try await redis.execute(["XLEN", Self.key]).integer == 10)

        let handler = PositionHandler(key: Self.key)
        let (worker, lease) = Self.worker(redis, handler)
        #expect(try await worker.drainOnce(bucket: 0, lease: lease) == 4)
        #expect(try await Self.group(redis).pending == 0)
        #expect(try await worker.drainOnce(bucket: 0, lease: lease) == 5)
        #expect(try await worker.drainOnce(bucket: 0, lease: lease) == 1)
        #expect(handler.batches.withLock { $0.flatMap { $0 } } == (1...10).map { "1-\($0)" }, "each entry once, in order")
        let group = try await Self.group(redis)
        #expect(group.lastDeliveredID == "1-10" && group.entriesRead == 10 && group.lag == 0)
        await redis.shutdown()
        await server.stop()
    }

    /// Redis lost the stream (a `FLUSHALL`, a failover to an empty replica): the round fails with
    /// `NOGROUP`, the next one creates the group again, and what is written after is read.
    @Test func aLostStreamGetsItsGroupBack() async throws {
        let (server, redis) = try await Self.stream(entries: 3)
        let handler = PositionHandler(key: Self.key)
        let (worker, lease) = Self.worker(redis, handler)
        #expect(try await worker.drain(lease).entries == 3)
        try await redis.execute(["FLUSHALL"])
        try await redis.execute(["XADD", Self.key, "2-1", "d", "device"])  // the gateway's next heartbeat
        await #expect(throws: RedisError.self) { try await worker.drain(lease) }
        #expect(try await worker.drain(lease).entries == 1)
        #expect(handler.batches.withLock { $0.last } == ["2-1"])
        await redis.shutdown()
        await server.stop()
    }
}
