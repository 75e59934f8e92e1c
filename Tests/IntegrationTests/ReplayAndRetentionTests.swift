import Foundation
import HTTPTypes
import HeartbeatDomain
import HummingbirdTesting
import Logging
import NIOCore
import PostgresAdapter
import RedisAdapter
import Synchronization
import Testing

@testable import Ingest
@testable import Monitor

/// What makes replays, trimming, fencing, retention and slow clients safe, on real Redis and
/// PostgreSQL: each mechanism driven directly, in the state a crash or a stale leader leaves.
@Suite(.serialized) struct ReplayAndRetentionTests {
    /// Records the batches a ``StreamWorker`` hands over; `beforeReading` lets a test act in between.
    final class RecordingHandler: StreamBatchHandler {
        static let group = TransitionApplier.group
        let key: String
        let batches = Mutex<[[String]]>([])
        let onBeforeReading: @Sendable () async throws -> Void

        init(key: String, onBeforeReading: @escaping @Sendable () async throws -> Void) {
            self.key = key
            self.onBeforeReading = onBeforeReading
        }

        func stream(bucket: Int) -> String { key }
        func beforeReading(stream: String) async throws { try await onBeforeReading() }
        func handle(_ entries: [StreamEntry], bucket: Int, lease: Leadership.Lease) async throws {
            batches.withLock { $0.append(entries.map(\.id)) }
        }
    }

    /// A Redis with `key` holding `entries` transition entries, and the applier's group on it.
    static func stream(_ key: String, entries: Int) async throws -> (RedisServer, RedisClient) {
        let server = try await RedisServer.start()
        let redis = server.client()
        try await redis.xgroupCreate(key, group: TransitionApplier.group)
        for index in 0..<entries {
            try await redis.execute(["XADD", key, "*", "device", "d\(index)", "type", "online", "at", "1", "last_heartbeat", "1"])
        }
        return (server, redis)
    }

    @Test func trimmingKeepsEntriesAnotherInstanceStillHolds() async throws {
        let (server, redis) = try await Self.stream("hb:{0}:transitions", entries: 10)
        let stream = "hb:{0}:transitions"
        // the old leader reads five entries (and will not store them) just before the new one reads on
        let held = Mutex<[StreamEntry]>([])
        let handler = RecordingHandler(key: stream) {
            guard held.withLock({ $0.isEmpty }) else { return }
            let read = try await redis.xreadgroup(stream, group: TransitionApplier.group, consumer: "old-leader", count: 5)
            held.withLock { $0 = read }
        }
        let leadership = Leadership()
        let lease = leadership.grant(.init(backendPID: 0))
        let worker = StreamWorker(
            redis: redis, buckets: 0..<1, consumer: "new-leader", handler: handler, batchSize: 5,
            leadership: leadership, pollInterval: .seconds(1), logger: Logger(label: "test"))
        #expect(try await worker.drainOnce(bucket: 0, lease: lease) == 5)
        #expect(try await redis.execute(["XLEN", stream]).integer == 10, "entries another instance holds were trimmed")
        // the old leader dies; its entries are claimed whole and can then go
        #expect(try await worker.drainOnce(bucket: 0, lease: lease) == 5)
        let batches = handler.batches.withLock { $0 }
        #expect(batches.count == 2 && batches[1] == held.withLock { $0.map(\.id) })
        #expect(try await redis.execute(["XLEN", stream]).integer == 5)
        await redis.shutdown()
        await server.stop()
    }

    /// A worker that lingers (the history writer) drains a backlog at once, batch after batch, but
    /// after a batch that was not full waits for its next poll: under a steady trickle it would
    /// otherwise read a few entries per round, and pay each round's statements for them.
    @Test(arguments: [true, false]) func aLingeringWorkerWaitsForItsPollAfterAPartialBatch(lingers: Bool) async throws {
        let (server, redis) = try await Self.stream("hb:{0}:history", entries: 12)
        let stream = "hb:{0}:history"
        let reads = Mutex(0)
        let handler = RecordingHandler(key: stream) { reads.withLock { $0 += 1 } }
        let leadership = Leadership()
        _ = leadership.grant(.init(backendPID: 0))
        let worker = StreamWorker(
            redis: redis, buckets: 0..<1, consumer: "leader", handler: handler, batchSize: 5,
            leadership: leadership, pollInterval: .seconds(30), lingers: lingers, logger: Logger(label: "test"))
        let running = Task { try await worker.run() }
        try await Task.sleep(for: .milliseconds(1500))
        running.cancel()
        _ = try? await running.value
        // batches of 5, 5 and 2; then a lingering worker waits, the other reads once more and finds nothing
        #expect(handler.batches.withLock { $0.map(\.count) } == [5, 5, 2])
        #expect(reads.withLock { $0 } == (lingers ? 3 : 4))
        await redis.shutdown()
        await server.stop()
    }

    @Test func trimBoundStopsAtTheLowestPendingEntry() throws {
        let through = try #require(StreamID("1700000000005-0"))
        #expect(StreamWorker<RecordingHandler>.trimBound(after: through, lowestPending: nil).description == "1700000000005-1")
        #expect(StreamWorker<RecordingHandler>.trimBound(after: through, lowestPending: StreamID("1700000000001-0")).description == "1700000000001-0")
    }

    /// `apply_transitions_fenced` on one device: (stream id, kind, at ms), through the store on a
    /// pool, as `lease`'s leader.
    static func apply(_ pool: PostgresPool, _ device: DeviceID, _ entries: [(String, String, Int64)], lease: Leadership.Lease) async throws {
        let batch = TransitionBatch(
            entries: entries.map { id, kind, at in
                StreamEntry(id: id, fields: ["device": device.string, "type": kind, "at": String(at), "last_heartbeat": String(at)])
            })
        _ = try await PostgresTransitionStore(db: pool).apply(batch, bucket: 0, offlineAfter: .seconds(2), lease: lease)
    }

    /// Takes the leader lock as ``PostgresLeaderLock`` does; the lease of that session.
    static func lead(_ database: TestDatabase, as name: String = "leader") async throws -> (PostgresLeaderLock, Leadership.Lease) {
        let lock = PostgresLeaderLock(url: database.url, applicationName: name)
        let session = try #require(try await lock.tryAcquire())
        return (lock, Leadership().grant(session))
    }

    @Test func replaysAreSkippedAndARepeatedStreamIDIsNot() async throws {
        let database = try await TestDatabase.create()
        try await Migrations.run(on: database.connection)
        let db = database.connection
        let pool = PostgresPool(url: database.url, applicationName: "apply", size: 2)
        let (lock, lease) = try await Self.lead(database)
        let id = DeviceID.random()
        func status() async throws -> [String?] {
            try await db.query("SELECT status, status_version FROM devices WHERE id = $1", [id.string]).rows.first ?? []
        }
        try await Self.apply(pool, id, [("1-0", "online", 1000)], lease: lease)
        try await Self.apply(pool, id, [("2-0", "online", 2000)], lease: lease)  // changes nothing
        try await Self.apply(pool, id, [("3-0", "offline", 3000)], lease: lease)
        #expect(try await status() == ["offline", "2"])
        // a crash between commit and XACK: the no-change entry comes again after the newer one
        try await Self.apply(pool, id, [("2-0", "online", 2000)], lease: lease)
        #expect(try await status() == ["offline", "2"], "a replayed entry was applied after a newer one")
        // a Redis failover hands out a stream id again, for a different transition: it is applied
        try await Self.apply(pool, id, [("1-0", "online", 4000)], lease: lease)
        #expect(try await status() == ["online", "3"])
        await lock.close()
        await pool.close()
        await database.drop()
    }

    /// Transitions are applied on pool sessions, several buckets at once. An old leader's write
    /// already past its leader check when the lock changes hands finishes before the new leader
    /// can lead; every write of the old leader after that is refused, and the applier gives up
    /// its lease on the refusal.
    @Test func transitionWritesAreFencedAcrossALeaderChange() async throws {
        let database = try await TestDatabase.create()
        try await Migrations.run(on: database.connection)
        let pool = PostgresPool(url: database.url, applicationName: "apply", size: 2)
        let (oldLock, oldLease) = try await Self.lead(database, as: "old-leader")
        let id = DeviceID.random()
        try await Self.apply(pool, id, [("1-0", "online", 1000)], lease: oldLease)

        // the old leader's next write is past its check (it holds the fence shared) when its session dies
        let inFlight = try await PostgresConnection.connect(url: database.url, applicationName: "old-leader-write")
        try await inFlight.simpleQuery("BEGIN")
        try await inFlight.query("SELECT pg_advisory_xact_lock_shared(\(PostgresLeaderLock.writeFenceKey))")
        try await inFlight.query("SELECT assert_leader(\(oldLease.backendPID)::int)")
        await oldLock.close()
        @Sendable func advisoryLocks(_ key: Int64, granted: Bool) async throws -> String? {
            try await database.connection.query(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = \(key) AND granted = \(granted)"
            ).scalar
        }
        // the old session's backend ends a moment after its client closes it
        #expect(try await eventually { try await advisoryLocks(PostgresLeaderLock.key, granted: true) == "0" })
        let newLock = PostgresLeaderLock(url: database.url, applicationName: "new-leader")
        let acquiring = Task { try await newLock.tryAcquire() }
        // the lock is the new leader's, but it waits for the write in flight before it leads
        #expect(
            try await eventually { try await advisoryLocks(PostgresLeaderLock.writeFenceKey, granted: false) == "1" },
            "the new leader did not wait for the old leader's write in flight")
        try await Task.sleep(for: .milliseconds(300))
        #expect(try await advisoryLocks(PostgresLeaderLock.key, granted: true) == "1")
        #expect(try await advisoryLocks(PostgresLeaderLock.writeFenceKey, granted: false) == "1", "it stopped waiting before the commit")
        try await inFlight.simpleQuery("COMMIT")
        let newSession = try #require(try await acquiring.value, "the new leader did not get the lock")

        // every later write of the old leader is refused, and the applier drops the lease on it
        await #expect(throws: PostgresError.self) { try await Self.apply(pool, id, [("2-0", "offline", 2000)], lease: oldLease) }
        let leadership = Leadership()
        let lease = leadership.grant(oldLease.session)
        let applier = TransitionApplier(
            keys: KeySchema(buckets: 1), store: PostgresTransitionStore(db: pool), leadership: leadership, offlineAfter: .seconds(2),
            metrics: MonitorMetrics(), logger: Logger(label: "test"))
        let entry = StreamEntry(id: "2-0", fields: ["device": id.string, "type": "offline", "at": "2000", "last_heartbeat": "2000"])
        do {
            try await applier.handle([entry], bucket: 0, lease: lease)
            Issue.record("the old leader's write was applied")
        } catch {
            #expect((error as? PostgresError)?.sqlState == .notLeader)
            applier.failed(error, lease: lease)
        }
        #expect(!leadership.isLeader, "the applier kept a lease the fence refused")
        #expect(try await database.connection.query("SELECT status FROM devices WHERE id = $1", [id.string]).scalar == "online")

        // the new leader writes
        try await Self.apply(pool, id, [("2-0", "offline", 2000)], lease: Leadership().grant(newSession))
        #expect(try await database.connection.query("SELECT status FROM devices WHERE id = $1", [id.string]).scalar == "offline")
        await inFlight.close()
        await newLock.close()
        await pool.close()
        await database.drop()
    }

    @Test func aHistoryBatchWrittenTwiceIsShownOnce() async throws {
        let h = try await MonitorHarness.start()
        try await h.withMonitor { client in
            let (id, _) = try await OpsAPITests.register(client, name: "twice")
            let payload = HeartbeatPayload(deviceID: id, deviceTime: UTCTimestamp(millisecondsSinceEpoch: 1_770_028_200_000))
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            let entries = (0..<3).map {
                StreamEntry(id: "\(now + Int64($0))-0", fields: ["d": id.string, "t": String(now + Int64($0)), "p": payload.storedForm])
            }
            let batch = HistoryBatch(entries: entries, bucket: 1)
            try await h.database.connection.query("SELECT ensure_history_partition(current_date)")
            // COPY committed, XACK lost: the batch is written again by whoever claims it
            try await h.database.connection.copyIn(PostgresHistoryStore.copy, data: batch.data)
            try await h.database.connection.copyIn(PostgresHistoryStore.copy, data: batch.data)
            #expect(try await h.database.connection.query("SELECT count(*) FROM heartbeat_history WHERE device_id = $1", [id.string]).scalar == "6")
            let shown = try await OpsAPITests.call(client, .get, "/api/v1/devices/\(id)/heartbeats")
            #expect((shown.json["heartbeats"] as? [Any])?.count == 3)
        }
        await h.shutdown()
    }

    @Test func writesOfAnInstanceThatLostTheLockAreRefused() async throws {
        let database = try await TestDatabase.create()
        try await Migrations.run(on: database.connection)
        let holder = try await PostgresConnection.connect(url: database.url, applicationName: "holder")
        #expect(try await holder.query("SELECT pg_try_advisory_lock($1)", [String(PostgresLeaderLock.key)]).scalar == "t")
        let pid = try #require(try await holder.query("SELECT pg_backend_pid()").scalar)
        try await database.connection.query("SELECT assert_leader($1::int)", [pid])
        await holder.close()  // the session dies: the lock with it
        try await Task.sleep(for: .milliseconds(200))
        await #expect(throws: PostgresError.self) { try await database.connection.query("SELECT assert_leader($1::int)", [pid]) }
        await database.drop()
    }

    @Test func oneUndeliverableTopicDoesNotHoldBackTheOther() async throws {
        let h = try await MonitorHarness.start()
        let (id, token) = try await h.register(1)[0]
        try await h.withMonitor(["OUTBOX_BATCH_SIZE": "5"]) { _ in
            // more offline rows than a batch that the producer refuses (over message.max.bytes)
            let huge = String(repeating: "x", count: 1_100_000)
            for index in 0..<6 {
                try await h.database.connection.query(
                    "INSERT INTO outbox (event_id, topic, key, payload) VALUES (gen_random_uuid(), 'device.offline', $1, $2)",
                    ["stuck-\(index)", huge])
            }
            try await h.beat(id, token: token)
            #expect(
                try await h.eventually(.seconds(8)) {
                    try await h.database.connection.query(
                        "SELECT count(*) FROM outbox WHERE topic = 'device.online' AND key = $1 AND published_at IS NOT NULL", [id.string]
                    ).scalar == "1"
                }, "device.online waited behind undeliverable device.offline rows")
            #expect(
                try await h.database.connection.query("SELECT count(*) FROM outbox WHERE key LIKE 'stuck-%' AND published_at IS NULL").scalar == "6")
        }
        await h.shutdown()
    }

    @Test func publishedOutboxRowsAndOldEventsArePurged() async throws {
        let database = try await TestDatabase.create()
        try await Migrations.run(on: database.connection)
        let db = database.connection
        let id = DeviceID.random()
        try await db.query("INSERT INTO devices (id) VALUES ($1)", [id.string])
        for (age, published) in [("10 days", true), ("1 minute", true), ("10 days", false)] {
            try await db.query(
                """
                INSERT INTO outbox (event_id, topic, key, payload, created_at, published_at)
                VALUES (gen_random_uuid(), 'device.online', 'k', '{}', now() - $1::interval, CASE WHEN $2 THEN now() - $1::interval END)
                """, [age, published ? "true" : "false"])
        }
        for (age, source) in [("100 days", "a"), ("1 day", "b")] {
            try await db.query(
                """
                INSERT INTO device_status_events (event_id, device_id, from_status, to_status, at, reason, status_version, source)
                VALUES (gen_random_uuid(), $1, 'unknown', 'online', now() - $2::interval, 'heartbeat_received', 1, $3)
                """, [id.string, age, source])
        }
        let pool = PostgresPool(url: database.url, applicationName: "purge", size: 1)
        let purged = try await PostgresHistoryStore(db: pool).purge(RetentionPolicy(outbox: .seconds(7 * 86_400), events: .seconds(90 * 86_400)))
        #expect(purged == 2)
        // the unpublished row is kept whatever its age: it has not reached Kafka yet
        #expect(try await db.query("SELECT count(*) FROM outbox").scalar == "2")
        #expect(try await db.query("SELECT count(*) FROM outbox WHERE published_at IS NULL").scalar == "1")
        #expect(try await db.query("SELECT source FROM device_status_events").scalar == "b")
        await pool.close()
        await database.drop()
    }

    @Test func idleAndTricklingConnectionsAreClosed() async throws {
        let h = try await GatewayHarness.start()
        try await h.withGateway(["HTTP_IDLE_TIMEOUT_SECONDS": "1"]) { client in
            guard let port = client.port else {
                Issue.record("no port")
                return
            }
            let started = ContinuousClock.now
            // half a request head, never finished: the gateway closes the connection
            _ = await offPool {
                RawSocket.exchange(port: port, send: Array("POST /api/v1/devices/x/heartbeat HTTP/1.1\r\nHost: a\r\n".utf8), timeout: .seconds(5))
            }
            let closedAfter = ContinuousClock.now - started
            #expect(closedAfter >= .milliseconds(900) && closedAfter < .seconds(3), "closed after \(closedAfter)")
        }
        await h.shutdown()
    }

    @Test func outOfRangeDatesAre400() async throws {
        let h = try await MonitorHarness.start()
        try await h.withMonitor { client in
            let (id, _) = try await OpsAPITests.register(client, name: "dates")
            for query in ["from=0001-01-01T00:00:00Z", "to=99999-01-01T00:00:00Z", "from=1969-12-31T23:59:59Z"] {
                let response = try await OpsAPITests.call(client, .get, "/api/v1/devices/\(id)/heartbeats?\(query)")
                #expect(response.status == .badRequest, "\(query): \(response.status)")
                #expect(try await OpsAPITests.call(client, .get, "/api/v1/devices/\(id)/uptime?\(query)").status == .badRequest, "\(query)")
            }
        }
        await h.shutdown()
    }
}
