import HeartbeatDomain
import KafkaAdapter
import Logging
import PostgresAdapter
import RedisAdapter
import Synchronization
import Testing

@testable import Monitor

/// The monitor's workers over in-memory stores: decisions and bookkeeping without services.
@Suite struct MonitorWorkerTests {
    static let logger = Logger(label: "test")

    static func scanner(
        _ store: InMemoryLivenessStore, leadership: Leadership, minDevices: Int = 50, batchSize: Int = 2,
        outages: RedisOutages = RedisOutages(offlineAfter: .seconds(600), buckets: 0..<2)
    ) -> OfflineScanner {
        OfflineScanner(
            store: store, buckets: 0..<2, leadership: leadership, offlineAfter: .seconds(600),
            outages: outages, scanInterval: .seconds(60), batchSize: batchSize,
            stormGuard: SharedStormGuard(
                StormGuard(
                    settings: .init(minDevices: minDevices, fraction: 0.5, maxHold: .seconds(900)),
                    window: .seconds(600))),
            metrics: MonitorMetrics(), logger: logger)
    }

    /// `count` devices in bucket `bucket`, silent for `silentSeconds`.
    static func add(_ store: InMemoryLivenessStore, count: Int, bucket: Int, silentSeconds: Int64) {
        store.state.withLock { state in
            for _ in 0..<count { state.online[bucket, default: [:]][DeviceID.random()] = state.nowMs - silentSeconds * 1000 }
        }
    }

    @Test func scannerDeclaresOnlyDevicesSilentPastTheThreshold() async throws {
        let store = InMemoryLivenessStore()
        Self.add(store, count: 3, bucket: 0, silentSeconds: 601)
        Self.add(store, count: 2, bucket: 1, silentSeconds: 601)
        Self.add(store, count: 20, bucket: 1, silentSeconds: 599)
        let leadership = Leadership()
        let report = try await Self.scanner(store, leadership: leadership).scan(leadership.grant(.init(backendPID: 0)))
        #expect(report.stale == 5 && report.online == 25 && report.declaredOffline == 5 && report.decision == .proceed)
        let transitions = store.state.withLock { $0.transitions.values.flatMap { $0 } }
        #expect(transitions.count == 5 && transitions.allSatisfy { $0.kind == .offline })
        #expect(store.state.withLock { $0.online.values.map(\.count).reduce(0, +) } == 20)
    }

    @Test func scannerWaitsWhileTheProbesHaveNotSeenRedisBack() async throws {
        let store = InMemoryLivenessStore()
        Self.add(store, count: 3, bucket: 0, silentSeconds: 700)
        Self.add(store, count: 90, bucket: 1, silentSeconds: 1)
        let leadership = Leadership()
        let outages = RedisOutages(offlineAfter: .seconds(600), buckets: 0..<2)
        let scanner = Self.scanner(store, leadership: leadership, batchSize: 10, outages: outages)
        let lease = leadership.grant(.init(backendPID: 0))
        outages.record(.unreachable(buckets: 0..<2))
        #expect(try await scanner.scan(lease).declaredOffline == 0)
        outages.record(.reached(runID: "back"))
        #expect(try await scanner.scan(lease).declaredOffline == 3)
    }

    @Test func aBucketOutOfReachIsSkippedWhileTheOthersAreScanned() async throws {
        let store = InMemoryLivenessStore()
        Self.add(store, count: 3, bucket: 0, silentSeconds: 700)
        Self.add(store, count: 4, bucket: 1, silentSeconds: 700)
        Self.add(store, count: 90, bucket: 0, silentSeconds: 1)
        let leadership = Leadership()
        let lease = leadership.grant(.init(backendPID: 0))
        let outages = RedisOutages(offlineAfter: .seconds(600), buckets: 0..<2)
        let scanner = Self.scanner(store, leadership: leadership, batchSize: 10, outages: outages)
        outages.record(await store.probe())  // the elector's probes, all answered
        // a cluster primary down: its bucket fails, the probe names it
        store.state.withLock { $0.unreachableBuckets = [1] }
        // before the probe has seen it: the bucket's count fails, the other bucket is scanned anyway
        #expect(try await scanner.scan(lease).declaredOffline == 3)
        Self.add(store, count: 2, bucket: 0, silentSeconds: 700)
        outages.record(await store.probe())
        #expect(outages.isOngoing(bucket: 1) && !outages.isOngoing(bucket: 0))
        #expect(try await scanner.scan(lease).declaredOffline == 2)
        // back: bucket 1's devices could not beat meanwhile, so they get the outage as credit
        store.state.withLock { $0.unreachableBuckets = [] }
        try await Task.sleep(for: .milliseconds(20))
        outages.record(await store.probe())
        #expect(outages.credit(bucket: 1) >= .milliseconds(20) && outages.credit(bucket: 0) == .zero)
        #expect(try await scanner.scan(lease).declaredOffline == 4)
        // nothing answers at all: the scan fails (and the leader loop logs it)
        store.state.withLock { $0.reachable = false }
        await #expect(throws: OfflineScanError.self) { try await scanner.scan(lease) }
    }

    @Test func scannerHoldsAStormAndDeclaresNothing() async throws {
        let store = InMemoryLivenessStore()
        Self.add(store, count: 8, bucket: 0, silentSeconds: 700)
        Self.add(store, count: 2, bucket: 1, silentSeconds: 10)
        let leadership = Leadership()
        let report = try await Self.scanner(store, leadership: leadership, minDevices: 5).scan(
            leadership.grant(.init(backendPID: 0)))
        #expect(report.decision == .hold(devices: 8, started: true) && report.declaredOffline == 0)
        #expect(store.state.withLock { $0.transitions.isEmpty })
    }

    @Test func scannerStopsWhenTheLeaseEnds() async throws {
        let store = InMemoryLivenessStore()
        Self.add(store, count: 10, bucket: 0, silentSeconds: 700)
        Self.add(store, count: 90, bucket: 1, silentSeconds: 1)
        let leadership = Leadership()
        let lease = leadership.grant(.init(backendPID: 0))
        leadership.revoke()
        let report = try await Self.scanner(store, leadership: leadership, batchSize: 2).scan(lease)
        #expect(report.stale == 10 && report.declaredOffline == 0)
    }

    @Test func applierStoresEachBatchAndSkipsMalformedEntries() async throws {
        let store = InMemoryTransitionStore()
        let leadership = Leadership()
        let applier = TransitionApplier(
            keys: KeySchema(buckets: 2), store: store, leadership: leadership, offlineAfter: .seconds(600),
            metrics: MonitorMetrics(), logger: Self.logger)
        let id = DeviceID.random()
        let lease = leadership.grant(.init(backendPID: 0))
        try await applier.handle(
            [
                StreamEntry(id: "1-0", fields: ["device": id.string, "type": "online", "at": "1", "last_heartbeat": "1"]),
                StreamEntry(id: "2-0", fields: ["device": "junk"]),
                StreamEntry(id: "3-0", fields: ["device": id.string, "type": "offline", "at": "3", "last_heartbeat": "1"]),
            ], bucket: 1, lease: lease)
        try await applier.handle([StreamEntry(id: "4-0", fields: [:])], bucket: 1, lease: lease)  // nothing to store
        #expect(store.applied.withLock { $0 } == [.init(bucket: 1, ids: ["1-0", "3-0"], kinds: ["online", "offline"])])
        #expect(applier.stream(bucket: 1) == KeySchema(buckets: 2).transitions(bucket: 1))
    }

    @Test func applierGivesUpTheLeaseWhenTheFenceRefusesItsWrite() {
        let leadership = Leadership()
        let applier = TransitionApplier(
            keys: KeySchema(buckets: 1), store: InMemoryTransitionStore(), leadership: leadership,
            offlineAfter: .seconds(600), metrics: MonitorMetrics(), logger: Self.logger)
        let lease = leadership.grant(.init(backendPID: 0))
        // a pool connection lost says nothing of the lock (the elector checks its session)
        applier.failed(PostgresError.connectionLost("server closed the connection"), lease: lease)
        #expect(leadership.isLeader)
        applier.failed(PostgresError.queryFailed(sqlState: .notLeader, message: "backend 1 does not hold the leader lock"), lease: lease)
        #expect(!leadership.isLeader)
    }

    /// Publishes whatever it is given, failing the keys in `failing`.
    final class FakePublisher: EventPublisher {
        let sent = Mutex<[KafkaProducer.Message]>([])
        let failing = Mutex<Set<String>>([])

        func publish(_ messages: [KafkaProducer.Message]) async -> [Result<Void, KafkaError>] {
            let failing = failing.withLock { $0 }
            sent.withLock { $0 += messages.filter { !failing.contains($0.key) } }
            return messages.map { failing.contains($0.key) ? .failure(KafkaError.delivery("refused")) : .success(()) }
        }
    }

    static func relay(_ outbox: InMemoryOutboxStore, _ publisher: FakePublisher, leadership: Leadership) -> OutboxRelay {
        OutboxRelay(
            outbox: outbox, publisher: publisher, topicNames: ["device.offline": "prod.offline"], leadership: leadership,
            batchSize: 10, pollInterval: .seconds(1), metrics: MonitorMetrics(), logger: logger)
    }

    @Test func relayMarksOnlyWhatTheBrokerAcknowledged() async throws {
        let outbox = InMemoryOutboxStore()
        outbox.add(topic: "device.offline", key: "a", payload: "{}")
        outbox.add(topic: "device.online", key: "b", payload: "{}")
        outbox.add(topic: "device.offline", key: "c", payload: "{}")
        let publisher = FakePublisher()
        publisher.failing.withLock { $0 = ["c"] }
        let leadership = Leadership()
        let result = try await Self.relay(outbox, publisher, leadership: leadership).relayOnce(
            leadership.grant(.init(backendPID: 0)))
        #expect(result.published == 2 && result.failed == 1)
        #expect(outbox.rows.withLock { $0.map(\.published) } == [true, true, false])
        #expect(publisher.sent.withLock { $0.map(\.topic) }.sorted() == ["device.online", "prod.offline"])
    }

    @Test func relayOfALeaseThatLostTheLockMarksNothing() async throws {
        let outbox = InMemoryOutboxStore()
        outbox.add(topic: "device.online", key: "a", payload: "{}")
        let leadership = Leadership()
        let stale = leadership.grant(.init(backendPID: 0))
        let current = leadership.grant(.init(backendPID: 1))
        outbox.leaderEpoch.withLock { $0 = current.epoch }
        await #expect(throws: InMemoryOutboxStore.NotLeader.self) {
            _ = try await Self.relay(outbox, FakePublisher(), leadership: leadership).relayOnce(stale)
        }
        #expect(outbox.rows.withLock { $0.map(\.published) } == [false])
    }

    @Test func reconcilerRestoresOnlyDevicesRedisLostAndStillOnline() async throws {
        let liveness = InMemoryLivenessStore()
        let keys = KeySchema(buckets: 2)
        let kept = DeviceID.random()
        let lost = DeviceID.random()
        liveness.state.withLock { $0.online[keys.bucket(of: kept), default: [:]][kept] = 5 }
        let devices = InMemoryDeviceRepository()
        devices.add(kept, status: .online, lastHeartbeatMs: 5)
        devices.add(lost, status: .online, lastHeartbeatMs: 7)
        devices.add(DeviceID.random(), status: .offline, lastHeartbeatMs: 9)
        let leadership = Leadership()
        let reconciler = Reconciler(
            devices: devices, registry: RecordingRegistryCache(), liveness: liveness, keys: keys, leadership: leadership, interval: .seconds(300),
            metrics: MonitorMetrics(), logger: Self.logger)
        #expect(try await reconciler.reconcile(leadership.grant(.init(backendPID: 0))) == 1)
        #expect(liveness.state.withLock { $0.online[keys.bucket(of: lost)]?[lost] } == 7)
    }

    @Test func reconcilerLeavesBucketsWhoseRegistryIsNotLoadedToTheReseed() async throws {
        let liveness = InMemoryLivenessStore()
        let keys = KeySchema(buckets: 1)
        let lost = DeviceID.random()
        let devices = InMemoryDeviceRepository()
        devices.add(lost, status: .online, lastHeartbeatMs: 7)
        let registry = RecordingRegistryCache()
        registry.unloaded.withLock { $0 = [0] }
        let leadership = Leadership()
        let reconciler = Reconciler(
            devices: devices, registry: registry, liveness: liveness, keys: keys, leadership: leadership, interval: .seconds(300),
            metrics: MonitorMetrics(), logger: Self.logger)
        #expect(try await reconciler.reconcile(leadership.grant(.init(backendPID: 0))) == 0)
        #expect(liveness.state.withLock { $0.online[0]?[lost] } == nil)
    }

    @Test func reseedWritesTheBucketsBackAndShiftsScoresByTheBlindWindow() async throws {
        let keys = KeySchema(buckets: 1)
        let devices = InMemoryDeviceRepository()
        let liveness = InMemoryLivenessStore()
        let nowMs = liveness.state.withLock { $0.nowMs }
        let beating = DeviceID.random()
        let silent = DeviceID.random()
        let offline = DeviceID.random()
        devices.add(beating, status: .online, lastHeartbeatMs: nowMs - 30_000)  // the newest: Redis went blind then
        devices.add(silent, status: .online, lastHeartbeatMs: nowMs - 330_000)  // silent 5 minutes before that
        devices.add(offline, status: .offline, lastHeartbeatMs: nowMs - 900_000)
        let cache = RecordingRegistryCache()
        let seeder = RegistrySeeder(
            devices: devices, registry: cache, liveness: liveness, keys: keys, leadership: Leadership(),
            checkInterval: .seconds(1), metrics: MonitorMetrics(), logger: Self.logger)
        #expect(try await seeder.seed(buckets: [0]) == 3)
        #expect(cache.written.withLock { Set($0) } == [beating, silent, offline])
        #expect(cache.loaded.withLock { $0 } == [0])
        let scores = liveness.state.withLock { $0.online[0] ?? [:] }
        #expect(scores == [beating: nowMs, silent: nowMs - 300_000])
    }

    static func elector(_ lock: InMemoryLeaderLock, _ redis: InMemoryLivenessStore, _ leadership: Leadership) -> LeaderElector {
        LeaderElector(
            lock: lock, liveness: redis, instanceID: "test", leadership: leadership, checkInterval: .seconds(1),
            redisTimeout: .milliseconds(50), outages: RedisOutages(offlineAfter: .seconds(600), buckets: 0..<2), redisRunID: RunIDWatch(),
            metrics: MonitorMetrics(), logger: logger)
    }

    @Test func aLeaderWithoutRedisGivesTheLockToAStandbyThatHasIt() async throws {
        let server = InMemoryLeaderLock.Server()
        let (redisA, redisB) = (InMemoryLivenessStore(), InMemoryLivenessStore())
        let (leaderA, leaderB) = (Leadership(), Leadership())
        let a = Self.elector(InMemoryLeaderLock(server: server), redisA, leaderA)
        let b = Self.elector(InMemoryLeaderLock(server: server), redisB, leaderB)
        var (reachedA, reachedB) = (ContinuousClock.now, ContinuousClock.now)
        await a.elect(redisReachedAt: &reachedA)
        await b.elect(redisReachedAt: &reachedB)
        #expect(leaderA.isLeader && !leaderB.isLeader)
        // A loses Redis: it keeps the lock until the timeout, then gives it up; B takes it
        redisA.state.withLock { $0.reachable = false }
        await a.elect(redisReachedAt: &reachedA)
        #expect(leaderA.isLeader)
        try await Task.sleep(for: .milliseconds(80))
        await a.elect(redisReachedAt: &reachedA)
        #expect(!leaderA.isLeader)
        await b.elect(redisReachedAt: &reachedB)
        #expect(leaderB.isLeader)
        // and an instance without Redis does not bid, even for a free lock
        await b.lock.close()
        leaderB.revoke()
        await a.elect(redisReachedAt: &reachedA)
        #expect(!leaderA.isLeader)
    }

    @Test func aClusterPrimaryDownKeepsTheLeaderButCountsAsAnOutage() async throws {
        let redis = InMemoryLivenessStore()
        let leadership = Leadership()
        let outages = RedisOutages(offlineAfter: .seconds(600), buckets: 0..<2)
        let elector = LeaderElector(
            lock: InMemoryLeaderLock(server: InMemoryLeaderLock.Server()), liveness: redis, instanceID: "test", leadership: leadership,
            checkInterval: .seconds(1), redisTimeout: .milliseconds(50), outages: outages, redisRunID: RunIDWatch(),
            metrics: MonitorMetrics(), logger: Self.logger)
        var reached = ContinuousClock.now
        await elector.elect(redisReachedAt: &reached)
        #expect(leadership.isLeader)
        // one primary down (a failover under way): the others answer, so the leader stays past the
        // timeout, while the scanner sees an outage it will credit the devices with
        redis.state.withLock { $0.unreachableBuckets = [1] }
        await elector.elect(redisReachedAt: &reached)
        try await Task.sleep(for: .milliseconds(80))
        await elector.elect(redisReachedAt: &reached)
        #expect(leadership.isLeader)
        #expect(outages.isOngoing(bucket: 1) && !outages.isOngoing(bucket: 0))
        redis.state.withLock { $0.unreachableBuckets = [] }
        await elector.elect(redisReachedAt: &reached)
        #expect(!outages.isOngoing(bucket: 0) && !outages.isOngoing(bucket: 1))
        #expect(outages.credit(bucket: 1) > .zero && outages.credit(bucket: 0) == .zero)
    }

    @Test func aLeaderWhoseLockSessionBrokeStepsDown() async throws {
        let server = InMemoryLeaderLock.Server()
        let leadership = Leadership()
        let elector = Self.elector(InMemoryLeaderLock(server: server), InMemoryLivenessStore(), leadership)
        var reached = ContinuousClock.now
        await elector.elect(redisReachedAt: &reached)
        #expect(leadership.isLeader)
        server.reachable.withLock { $0 = false }
        await elector.elect(redisReachedAt: &reached)
        #expect(!leadership.isLeader)
        #expect(server.holder.withLock { $0 } == nil)
    }
}

/// Records what the re-seed writes into the registry cache.
final class RecordingRegistryCache: RegistryCache {
    let written = Mutex<[DeviceID]>([])
    let loaded = Mutex<[Int]>([])

    func write(device: DeviceID, tokenHash: String, playlist: String?) async throws { written.withLock { $0.append(device) } }
    func assignPlaylist(_ playlist: String, to device: DeviceID) async throws {}
    func enqueueCommand(id: String, type: String, json: String, expiresAt: UTCTimestamp, for device: DeviceID, limit: Int) async throws -> Bool {
        true
    }
    func commands(of device: DeviceID, nowMs: Int64) async throws -> [CommandState] { [] }
    func lastHeartbeats(of devices: [DeviceID]) async throws -> [DeviceID: Int64] { [:] }
    func latest(_ device: DeviceID) async throws -> (payload: HeartbeatPayload?, receivedAt: UTCTimestamp?) { (nil, nil) }
    func markLoaded(buckets: [Int]) async throws { loaded.withLock { $0 += buckets } }
    func recordBucketCount() async throws {}
    let unloaded = Mutex<[Int]>([])
    func unloadedBuckets() async throws -> [Int] { unloaded.withLock { $0 } }
}
