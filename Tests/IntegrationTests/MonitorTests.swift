import Foundation
import HTTPTypes
import HeartbeatDomain
import HummingbirdTesting
import KafkaAdapter
import NIOCore
import Testing

@testable import Ingest
@testable import Monitor

/// The monitor end to end on real Redis, PostgreSQL and the Kafka mock, with
/// OFFLINE_AFTER_SECONDS=2 and SCAN_INTERVAL_SECONDS=0.5. Serialized: each test runs a monitor
/// with timing expectations, and the machine has two cores.
@Suite(.serialized) struct MonitorTests {
    @Test func aDeviceGoesOnlineOfflineAndOnlineWithOneEventEach() async throws {
        let h = try await MonitorHarness.start()
        let (id, token) = try await h.register(1)[0]
        try await h.withMonitor { _ in
            let beatAt = ContinuousClock.now
            #expect(try await h.beat(id, token: token) != .unknownDevice)
            #expect(try await h.eventually(.seconds(3)) { try await h.status(id)?.status == "online" })
            #expect(try await h.status(id)?.version == 1)
            // still online before OFFLINE_AFTER (2 s of Redis time) has passed
            try await Task.sleep(until: beatAt + .milliseconds(1200))
            #expect(try await h.status(id)?.status == "online")
            #expect(try await h.eventually(.seconds(5)) { try await h.status(id)?.status == "offline" })
            // declared offline 2 s after the last beat, within about a scan (both times are Redis time)
            let silence =
                try await h.database.connection.query(
                    "SELECT extract(epoch FROM status_changed_at - last_heartbeat) FROM devices WHERE id = $1", [id.string]
                ).scalar.flatMap(Double.init) ?? -1
            #expect(silence >= 2 && silence < 2 + 0.5 + 1.5, "offline after \(silence) s of silence")
            #expect(try await h.status(id)?.version == 2)
            try await h.beat(id, token: token)
            #expect(try await h.eventually(.seconds(3)) { try await h.status(id)?.status == "online" })
            #expect(try await h.events(id).map(\.status) == ["online", "offline", "online"])
            #expect(try await h.events(id).map(\.version) == [1, 2, 3])
            // all three published to Kafka, in order, with the documented fields
            #expect(
                try await h.eventually(.seconds(5)) {
                    try await h.database.connection.query("SELECT count(*) FROM outbox WHERE published_at IS NULL").scalar == "0"
                })
        }
        // two topics: Kafka orders within a partition only, consumers order on status_version
        // (the device went silent again after the last beat: a fourth event may follow, not checked here)
        let events = try await h.kafkaEvents(for: [id.string])
            .filter { ($0["status_version"] as? Int ?? 0) <= 3 }
            .sorted { ($0["status_version"] as? Int ?? 0) < ($1["status_version"] as? Int ?? 0) }
        #expect(events.map { $0["type"] as? String } == ["device.online", "device.offline", "device.online"])
        #expect(events.map { $0["status_version"] as? Int } == [1, 2, 3])
        let offline = try #require(events.count == 3 ? events[1] : nil)
        #expect(offline["device_id"] as? String == id.string)
        #expect(offline["status"] as? String == "offline")
        #expect(offline["previous_status"] as? String == "online")
        #expect(offline["reason"] as? String == "heartbeat_timeout")
        #expect(offline["offline_after_seconds"] as? Int == 2)
        #expect(UTCTimestamp(iso8601: offline["last_heartbeat"] as? String ?? "") != nil)
        #expect(UTCTimestamp(iso8601: offline["occurred_at"] as? String ?? "") != nil)
        #expect((offline["event_id"] as? String).flatMap(UUID.init(uuidString:)) != nil)
        await h.shutdown()
    }

    @Test func devicesThatKeepBeatingAreNeverTouched() async throws {
        let h = try await MonitorHarness.start()
        let devices = try await h.register(20)
        try await h.withMonitor { _ in
            let end = ContinuousClock.now + .seconds(6)
            while ContinuousClock.now < end {
                for (id, token) in devices { try await h.beat(id, token: token) }
                try await Task.sleep(for: .milliseconds(500))
            }
            for (id, _) in devices {
                #expect(try await h.events(id).map(\.status) == ["online"])
                #expect(try await h.status(id)?.status == "online")
            }
        }
        await h.shutdown()
    }

    @Test func racingHeartbeatsAndScansLeaveRedisAndPostgreSQLInAgreement() async throws {
        let h = try await MonitorHarness.start()
        let devices = try await h.register(200)
        try await h.withMonitor { _ in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (id, token) in devices {
                    group.addTask {
                        let end = ContinuousClock.now + .seconds(9)
                        while ContinuousClock.now < end {
                            try await h.beat(id, token: token)
                            // pauses around the 2 s threshold, so the scanner races the beats
                            try await Task.sleep(for: .milliseconds(Int.random(in: 300...2800)))
                        }
                    }
                }
                try await group.waitForAll()
            }
            // transitions written but not yet applied (pending or not yet read)
            @Sendable func pendingTransitions() async throws -> Int {
                var pending = 0
                for bucket in h.keys.allBuckets {
                    let info = try await h.redis.execute(["XPENDING", h.keys.transitions(bucket: bucket), TransitionApplier.group])
                    pending += Int(info.array?.first?.integer ?? 0)
                    let lag = try await h.redis.execute(["XINFO", "GROUPS", h.keys.transitions(bucket: bucket)])
                    let fields = lag.array?.first?.array ?? []
                    if let index = fields.firstIndex(of: .string("lag")), let value = fields[index + 1].integer { pending += Int(value) }
                }
                return pending
            }
            #expect(try await h.eventually(.seconds(10)) { try await pendingTransitions() == 0 })
            // Compare one consistent moment: Redis's online sets before and after one read of
            // PostgreSQL, with nothing pending in between (the scanner keeps running).
            func onlineInRedis() async throws -> Set<String> {
                var online = Set<String>()
                for bucket in h.keys.allBuckets {
                    online.formUnion(
                        try await h.redis.execute(["ZRANGE", h.keys.online(bucket: bucket), "0", "-1"]).array?.compactMap(\.string) ?? [])
                }
                return online
            }
            let ids = "{" + devices.map(\.0.string).joined(separator: ",") + "}"
            var statuses: [String: String] = [:]
            var online = Set<String>()
            var consistent = false
            for _ in 0..<10 where !consistent {
                let before = try await onlineInRedis()
                statuses = Dictionary(
                    uniqueKeysWithValues: try await h.database.connection.query(
                        "SELECT id, status FROM devices WHERE id = ANY($1::uuid[])", [ids]
                    ).rows.map { ($0[0] ?? "", $0[1] ?? "") })
                let after = try await onlineInRedis()
                let pending = try await pendingTransitions()
                consistent = before == after && pending == 0
                online = after
            }
            #expect(consistent, "Redis kept changing under the comparison")
            let events = try await h.database.connection.query(
                "SELECT device_id, to_status, status_version FROM device_status_events WHERE device_id = ANY($1::uuid[]) ORDER BY id", [ids])
            var history: [String: [(status: String, version: Int)]] = [:]
            for row in events.rows { history[row[0] ?? "", default: []].append((row[1] ?? "", Int(row[2] ?? "") ?? -1)) }
            var transitionsSeen = 0
            for (id, _) in devices {
                #expect(statuses[id.string] == (online.contains(id.string) ? "online" : "offline"), "\(id)")
                let events = history[id.string] ?? []
                transitionsSeen += events.count
                #expect(events.first?.status == "online")
                for (previous, next) in zip(events, events.dropFirst()) {
                    #expect(previous.status != next.status, "\(id): \(events)")
                    #expect(next.version == previous.version + 1, "\(id): \(events)")
                }
                #expect(events.last?.status == statuses[id.string])
            }
            #expect(transitionsSeen > devices.count * 2, "the race produced offline/online flips: \(transitionsSeen)")
        }
        await h.shutdown()
    }

    @Test func theStormGuardHoldsAMassOfflineUntilReleased() async throws {
        let h = try await MonitorHarness.start()
        let devices = try await h.register(10)
        // all ten fall silent together while no monitor runs (beats a few ms apart could otherwise
        // straddle a scan and go out in two slices): the new leader's first scan sees the storm
        for (id, token) in devices { try await h.beat(id, token: token) }
        try await Task.sleep(for: .seconds(2.5))
        try await h.withMonitor(["MASS_OFFLINE_MIN_DEVICES": "5", "MASS_OFFLINE_FRACTION": "0.5", "MASS_OFFLINE_HOLD_SECONDS": "60"]) { client in
            // a storm, so nobody is declared offline (their online transitions are applied)
            try await Task.sleep(for: .seconds(1.5))
            for (id, _) in devices { #expect(try await h.status(id)?.status == "online") }
            let ready = try await client.execute(uri: "/readyz", method: .get)
            #expect(String(buffer: ready.body).contains(#""mass_offline_hold":true"#))
            let metrics = String(buffer: try await client.execute(uri: "/metrics", method: .get).body)
            #expect(metrics.contains("monitor_storm_guard_trips_total"))
            // (the gateway's families are in this registry too: other tests of this process ran gateways)
            let withoutHelp = metricFamiliesWithoutHelp(metrics).filter { IngestMetrics.help[$0] == nil }
            #expect(withoutHelp.isEmpty, "\(withoutHelp)")
            // the census: PostgreSQL's counts and the consumer groups' backlogs
            #expect(metricValue("monitor_devices_offline", in: metrics) == 0)
            #expect(metrics.contains(#"monitor_stream_pending_entries{group="monitor"}"#), "\(metrics)")
            #expect(metrics.contains(#"monitor_stream_unread_entries{group="history"}"#))
            // the ops API needs the admin token
            #expect(try await client.execute(uri: "/api/v1/fleet/release-hold", method: .post).status == .unauthorized)
            let released = try await client.execute(
                uri: "/api/v1/fleet/release-hold", method: .post,
                headers: [.authorization: "Bearer \(MonitorHarness.adminToken)"])
            #expect(released.status == .ok)
            #expect(String(buffer: released.body) == #"{"released":true}"#)
            #expect(
                try await h.eventually(.seconds(3)) {
                    for (id, _) in devices where try await h.status(id)?.status != "offline" { return false }
                    return true
                })
        }
        await h.shutdown()
    }

    @Test func theStormGuardHoldEndsAfterItsLongestHold() async throws {
        let h = try await MonitorHarness.start()
        let devices = try await h.register(6)
        for (id, token) in devices { try await h.beat(id, token: token) }
        try await Task.sleep(for: .seconds(2.5))  // silent together before the monitor starts, as above
        try await h.withMonitor(["MASS_OFFLINE_MIN_DEVICES": "5", "MASS_OFFLINE_HOLD_SECONDS": "2"]) { _ in
            try await Task.sleep(for: .seconds(1))
            for (id, _) in devices { #expect(try await h.status(id)?.status == "online") }
            #expect(
                try await h.eventually(.seconds(4)) {
                    for (id, _) in devices where try await h.status(id)?.status != "offline" { return false }
                    return true
                })
        }
        await h.shutdown()
    }

    @Test func aStandbyTakesOverWhenTheLeaderDies() async throws {
        let h = try await MonitorHarness.start()
        let (id, token) = try await h.register(1)[0]
        let first = try await h.startMonitor(instance: "first")
        try await Task.sleep(for: .milliseconds(500))
        let second = try await h.startMonitor(instance: "second")
        func leader() async throws -> String? {
            try await h.database.connection.query(
                """
                SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                WHERE l.locktype = 'advisory' AND l.objid = $1 AND l.granted
                  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                """, [String(PostgresLeaderLock.key)]
            ).scalar
        }
        #expect(try await h.eventually(.seconds(3)) { try await leader() == "hbm-leader-first" })
        try await h.beat(id, token: token)
        #expect(try await h.eventually(.seconds(3)) { try await h.status(id)?.status == "online" })

        // The leader's session dies under it (network cut): it must stop acting, and one leader must follow.
        _ = try await h.database.connection.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'hbm-leader-first'")
        var next: String?
        #expect(
            try await h.eventually(.seconds(5)) {
                next = try await leader()
                return next != nil
            })
        // Then the leader dies outright (whichever instance leads now); the other carries on.
        let (dead, survivor) = next == "hbm-leader-first" ? (first, second) : (second, first)
        await dead.kill()
        _ = try await h.database.connection.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", ["hbm-leader-" + dead.instance])
        #expect(try await h.eventually(.seconds(5)) { try await leader() == "hbm-leader-" + survivor.instance })
        // the standby carries on: the silent device goes offline, and comes back
        #expect(try await h.eventually(.seconds(8)) { try await h.status(id)?.status == "offline" })
        try await h.beat(id, token: token)
        #expect(try await h.eventually(.seconds(3)) { try await h.status(id)?.status == "online" })
        #expect(try await h.events(id).map(\.version) == [1, 2, 3])
        await survivor.stop()
        #expect(try await leader() == nil)  // a graceful stop releases the lock
        await h.shutdown()
    }

    @Test func eventsGoToTheConfiguredTopics() async throws {
        let h = try await MonitorHarness.start()
        let (id, token) = try await h.register(1)[0]
        let topic = "fleet-\(UUID().uuidString.prefix(8).lowercased()).online"
        try await h.withMonitor(["KAFKA_TOPIC_ONLINE": topic]) { _ in
            try await h.beat(id, token: token)
            #expect(
                try await h.eventually(.seconds(5)) {
                    let unpublished = try await h.database.connection.query("SELECT count(*) FROM outbox WHERE published_at IS NULL").scalar
                    let status = try await h.status(id)?.status
                    return unpublished == "0" && status == "online"
                })
        }
        let reader = try KafkaTopicReader(brokers: h.kafkaBrokers, topics: [topic])
        let records = await reader.read(for: .seconds(3), idle: .seconds(1)).filter { $0.key == id.string }
        let event = records.first.flatMap { try? JSONSerialization.jsonObject(with: Data($0.value.utf8)) as? [String: Any] }
        #expect(records.count == 1 && event?["type"] as? String == "device.online", "\(records)")
        await h.shutdown()
    }

    // Kafka going away must not lose events: they wait in the outbox and go out when it is back.
    static func signalKafka(_ signal: Int32) throws {
        guard let run = ProcessInfo.processInfo.environment["HEARTBEAT_RUN_DIR"],
            let text = try? String(contentsOfFile: run + "/kafka/kafka.pid", encoding: .utf8),
            let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))
        else { throw TestFailure("Kafka mock pid not found: run with `make test`") }
        kill(pid, signal)
    }

    @Test func eventsWaitInTheOutboxWhileKafkaIsDown() async throws {
        let h = try await MonitorHarness.start()
        let (id, token) = try await h.register(1)[0]
        // Down before the monitor starts: the mock refuses new connections but keeps old ones.
        try Self.signalKafka(SIGUSR1)
        defer { try? Self.signalKafka(SIGUSR2) }
        try await Task.sleep(for: .milliseconds(1500))  // the mock takes up to a second to act on a signal
        try await h.withMonitor { client in
            @Sendable func backlogGauge() async throws -> Double? {
                metricValue("monitor_outbox_backlog", in: String(buffer: try await client.execute(uri: "/metrics", method: .get).body))
            }
            try await h.beat(id, token: token)
            #expect(try await h.eventually(.seconds(4)) { try await h.status(id)?.status == "online" })
            try await Task.sleep(for: .seconds(2))
            #expect(try await h.database.connection.query("SELECT count(*) FROM outbox WHERE published_at IS NULL").scalar == "1")
            #expect(try await h.eventually(.seconds(3)) { try await backlogGauge() == 1 })
            try Self.signalKafka(SIGUSR2)
            #expect(
                try await h.eventually(.seconds(20)) {
                    try await h.database.connection.query("SELECT count(*) FROM outbox WHERE published_at IS NULL").scalar == "0"
                })
            #expect(try await h.eventually(.seconds(3)) { try await backlogGauge() == 0 })
        }
        let events = try await h.kafkaEvents(for: [id.string]).filter { $0["type"] as? String == "device.online" }
        #expect(Set(events.compactMap { $0["event_id"] as? String }).count == 1)
        await h.shutdown()
    }
}
