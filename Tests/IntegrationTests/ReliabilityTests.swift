import Foundation
import HTTPTypes
import HeartbeatDomain
import HummingbirdTesting
import NIOCore
import PostgresAdapter
import Synchronization
import Testing

@testable import Ingest
@testable import Monitor

/// Status stays true under faults: each test breaks one thing on real Redis, PostgreSQL and the
/// Kafka mock (OFFLINE_AFTER_SECONDS=2, SCAN_INTERVAL_SECONDS=0.5) and checks what an operator
/// would see. Lines starting `RELIABILITY:` are the figures docs/reliability.md reports.
@Suite(.serialized) struct ReliabilityTests {
    static let offlineAfter = 2.0
    static let scanInterval = 0.5

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    /// Beats every device every `every` until `stop` is set; counts outcomes.
    final class Beater: Sendable {
        let outcomes = Mutex<[String: Int]>([:])
        let firstRefusal = Mutex<ContinuousClock.Instant?>(nil)
        let lastRefusal = Mutex<ContinuousClock.Instant?>(nil)
        let stopped = Mutex(false)

        func run(_ h: MonitorHarness, _ devices: [(DeviceID, String)], every: Duration) async {
            while !stopped.withLock({ $0 }) {
                for (id, token) in devices {
                    let outcome = (try? await h.beat(id, token: token)).map { "\($0)" } ?? "error"
                    let key = outcome.hasPrefix("recorded") ? "recorded" : outcome
                    outcomes.withLock { $0[key, default: 0] += 1 }
                    if key != "recorded" {
                        let now = ContinuousClock.now
                        firstRefusal.withLock { $0 = $0 ?? now }
                        lastRefusal.withLock { $0 = now }
                    }
                }
                try? await Task.sleep(for: every)
            }
        }
    }

    @Test func theOpsAPIAndPostgreSQLShowTheLatestHeartbeat() async throws {
        let h = try await MonitorHarness.start()
        // OFFLINE_AFTER 20 s: the column is written for a device at most every 10 s
        try await h.withMonitor(["OFFLINE_AFTER_SECONDS": "20"]) { client in
            let (id, token) = try await OpsAPITests.register(client, name: "lobby")
            guard case .recorded(let first, _, _) = try await h.beat(id, token: token) else {
                Issue.record("beat refused")
                return
            }
            #expect(try await h.eventually(.seconds(3)) { try await h.status(id)?.status == "online" })
            @Sendable func column() async throws -> String? {
                try await h.database.connection.query("SELECT iso(last_heartbeat) FROM devices WHERE id = $1", [id.string]).scalar
            }
            @Sendable func exact() async throws -> String? {
                try await h.database.connection.query(
                    "SELECT iso(last_heartbeat_of(id, last_heartbeat)) FROM devices WHERE id = $1", [id.string]
                ).scalar
            }
            // a device's first heartbeat is written behind at once
            #expect(try await h.eventually(.seconds(3)) { try await column() == first.iso8601 })
            try await Task.sleep(for: .milliseconds(300))
            guard case .recorded(let second, _, _) = try await h.beat(id, token: token) else {
                Issue.record("beat refused")
                return
            }
            // the detail and the list show the second beat at once (Redis time)
            let detail = try await OpsAPITests.call(client, .get, "/api/v1/devices/\(id)")
            #expect(detail.json["last_heartbeat"] as? String == second.iso8601)
            let list = try await OpsAPITests.call(client, .get, "/api/v1/devices?status=online")
            let row = (list.json["devices"] as? [[String: Any]])?.first { $0["id"] as? String == id.string }
            #expect(row?["last_heartbeat"] as? String == second.iso8601)
            // PostgreSQL has it once the history writer's batch is in, though the column, written
            // behind at most every OFFLINE_AFTER / 2, still holds the first
            let started = ContinuousClock.now
            #expect(try await h.eventually(.seconds(3)) { try await exact() == second.iso8601 })
            print("RELIABILITY: last_heartbeat in PostgreSQL within \(Self.seconds(ContinuousClock.now - started)) s of the beat")
            try await Task.sleep(for: .milliseconds(300))  // the batch's write-behind, had it been due
            #expect(try await column() == first.iso8601)
            // the scanner's gauges: devices online and the time of the last successful scan
            let metrics = String(buffer: try await client.execute(uri: "/metrics", method: .get).body)
            #expect(metrics.contains("monitor_devices_online 1"), "\(metrics)")
            let lastScan = metricValue("monitor_last_scan_timestamp_seconds", in: metrics)
            #expect(lastScan.map { abs($0 - Date().timeIntervalSince1970) < 5 } == true)
            // Redis loses its data: once the re-seed has put the device back, the detail (Redis has no
            // heartbeat of it now) shows PostgreSQL's, the second
            try await h.redis.execute(["FLUSHALL"])
            #expect(
                try await h.eventually(.seconds(3)) {
                    try await h.redis.execute(["ZSCORE", h.keys.online(bucket: h.keys.bucket(of: id)), id.string]) != .null
                })
            let reseeded = try await OpsAPITests.call(client, .get, "/api/v1/devices/\(id)")
            #expect(reseeded.json["last_heartbeat"] as? String == second.iso8601)
            #expect(reseeded.json["status"] as? String == "online")
        }
        await h.shutdown()
    }

    /// The re-seed's scores come from each device's newest heartbeat in PostgreSQL, not from
    /// `devices.last_heartbeat`, which is written behind at most every OFFLINE_AFTER / 2.
    @Test func theReseedScoresDevicesFromTheirNewestHeartbeatNotTheColumn() async throws {
        let h = try await MonitorHarness.start()
        try await h.migrate()
        // two devices of one bucket
        let registered = try await h.registerEverywhere(12)
        let byBucket = Dictionary(grouping: registered) { h.keys.bucket(of: $0.0) }
        guard let pair = byBucket.values.first(where: { $0.count >= 2 }) else {
            Issue.record("no two of 12 devices share one of 4 buckets")
            return
        }
        let (a, b) = (pair[0], pair[1])
        try await h.withMonitor(["OFFLINE_AFTER_SECONDS": "20"]) { _ in
            @Sendable func beat(_ device: (DeviceID, String)) async throws -> Int64 {
                guard case .recorded(let at, _, _) = try await h.beat(device.0, token: device.1) else { throw TestFailure("beat refused") }
                return at.millisecondsSinceEpoch
            }
            @Sendable func written(_ id: DeviceID) async throws -> Bool {
                try await h.database.connection.query("SELECT last_heartbeat IS NOT NULL FROM devices WHERE id = $1", [id.string]).scalar == "t"
            }
            // b first, then a: both written behind on first sight; then b again, within the interval
            _ = try await beat(b)
            #expect(try await h.eventually(.seconds(3)) { try await written(b.0) })
            try await Task.sleep(for: .milliseconds(300))
            let aLast = try await beat(a)
            #expect(try await h.eventually(.seconds(3)) { try await written(a.0) })
            try await Task.sleep(for: .milliseconds(300))
            let bLast = try await beat(b)
            #expect(
                try await h.eventually(.seconds(3)) {
                    try await h.database.connection.query("SELECT count(*) FROM heartbeat_history WHERE device_id = $1", [b.0.string]).scalar
                        == "2"
                })
            try await h.redis.execute(["FLUSHALL"])
            let online = h.keys.online(bucket: h.keys.bucket(of: a.0))
            #expect(try await h.eventually(.seconds(3)) { try await h.redis.execute(["ZCARD", online]) == .integer(2) })
            // both moved forward by one blind window: their scores stay as far apart as their beats
            // (from the column, b's first beat would have made b the earlier one)
            let scoreA = try await h.redis.execute(["ZSCORE", online, a.0.string]).string.flatMap { Int64($0) }
            let scoreB = try await h.redis.execute(["ZSCORE", online, b.0.string]).string.flatMap { Int64($0) }
            #expect(scoreB.flatMap { b in scoreA.map { b - $0 } } == bLast - aLast, "scores \(scoreA ?? -1) \(scoreB ?? -1), beats \(aLast) \(bLast)")
        }
        await h.shutdown()
    }

    @Test func aRedisDataLossDeclaresNoBeatingDeviceOffline() async throws {
        let h = try await MonitorHarness.start()
        try await h.migrate()
        let beating = try await h.registerEverywhere(12)
        let silent = try await h.registerEverywhere(1)
        try await h.withMonitor { _ in
            for (id, token) in beating + silent { try await h.beat(id, token: token) }
            #expect(
                try await h.eventually(.seconds(3)) {
                    try await h.database.connection.query("SELECT count(*) FROM devices WHERE status = 'online'").scalar == "13"
                })
            // beats further apart than a scan, and a first beat older than OFFLINE_AFTER at the loss:
            // a re-seed from stale times would have them offline before their next beat
            let beater = Beater()
            let load = Task { await beater.run(h, beating, every: .milliseconds(1200)) }
            try await Task.sleep(for: .seconds(Self.offlineAfter + 1.5))
            let lostAt = ContinuousClock.now
            try await h.redis.execute(["FLUSHALL"])  // a Redis restart without its data
            #expect(
                try await h.eventually(.seconds(5)) {
                    for bucket in h.keys.allBuckets where try await h.redis.execute(["EXISTS", h.keys.registryMarker(bucket: bucket)]) != .integer(1)
                    {
                        return false
                    }
                    return true
                })
            let reseeded = Self.seconds(ContinuousClock.now - lostAt)
            // keep beating well past OFFLINE_AFTER, so a wrong score would have been acted on
            try await Task.sleep(for: .seconds(Self.offlineAfter + 2 * Self.scanInterval + 1))
            beater.stopped.withLock { $0 = true }
            await load.value
            let outcomes = beater.outcomes.withLock { $0 }
            #expect(outcomes["unknownDevice"] == nil, "a registered device was told it is unknown: \(outcomes)")
            let window = beater.lastRefusal.withLock { $0 }.map { Self.seconds($0 - lostAt) } ?? 0
            print(
                "RELIABILITY: Redis data loss: registry re-seeded \(reseeded) s after FLUSHALL; last 503 \(window) s after it; outcomes \(outcomes)")
            for (id, _) in beating {
                #expect(try await h.events(id).map(\.status) == ["online"], "\(id) was declared offline while beating")
            }
            // the device that was silent before the loss is still declared offline, once
            #expect(try await h.eventually(.seconds(Self.offlineAfter + 3)) { try await h.status(silent[0].0)?.status == "offline" })
            #expect(try await h.events(silent[0].0).map(\.status) == ["online", "offline"])
        }
        await h.shutdown()
    }

    @Test func aRedisOutageLongerThanOfflineAfterDeclaresNoBeatingDeviceOffline() async throws {
        let h = try await MonitorHarness.start(appendOnly: true)
        let beating = try await h.register(8)
        let silent = try await h.register(1)
        try await h.withMonitor { _ in
            for (id, token) in beating + silent { try await h.beat(id, token: token) }
            // beats 1.5 s apart: after the outage a device's next beat can come well after the first scan
            let beater = Beater()
            let load = Task { await beater.run(h, beating, every: .milliseconds(1500)) }
            #expect(
                try await h.eventually(.seconds(3)) {
                    try await h.database.connection.query("SELECT count(*) FROM devices WHERE status = 'online'").scalar == "9"
                })
            // Redis away longer than OFFLINE_AFTER (its data kept): every heartbeat meanwhile gets 503
            await h.server.stop()
            let down = ContinuousClock.now
            try await Task.sleep(for: .seconds(Self.offlineAfter + 0.5))
            try await h.server.start(appendOnly: true)
            let outage = Self.seconds(ContinuousClock.now - down)
            try await Task.sleep(for: .seconds(Self.offlineAfter + 2 * Self.scanInterval))
            beater.stopped.withLock { $0 = true }
            await load.value
            print("RELIABILITY: Redis outage with data kept: \(outage) s down, outcomes \(beater.outcomes.withLock { $0 })")
            for (id, _) in beating {
                #expect(try await h.events(id).map(\.status) == ["online"], "\(id) was declared offline while it kept trying")
            }
            // the device silent since before the outage is declared offline, once, the outage later
            #expect(try await h.eventually(.seconds(Self.offlineAfter + 2)) { try await h.status(silent[0].0)?.status == "offline" })
            #expect(try await h.events(silent[0].0).map(\.status) == ["online", "offline"])
        }
        await h.shutdown()
    }

    @Test func aRedisRestartReportsNoHistoryRowsShed() async throws {
        let h = try await MonitorHarness.start(appendOnly: true)
        let (id, token) = try await h.register(1)[0]
        @Sendable func rows() async throws -> Int {
            Int(try await h.database.connection.query("SELECT count(*) FROM heartbeat_history").scalar ?? "0") ?? 0
        }
        try await h.withMonitor { _ in
            try await h.beat(id, token: token)
            #expect(try await h.eventually(.seconds(5)) { try await rows() == 1 })
        }
        // a real shed first (no monitor, far more beats than the cap): the writer reports it once
        // and moves the group's read count, which Redis does not keep exactly across a reload
        let capped = RedisHeartbeatStore(redis: h.redis, keys: h.keys, minimumInterval: .zero, historyStreamCap: 1000)
        let payload = HeartbeatPayload(deviceID: id, deviceTime: UTCTimestamp(millisecondsSinceEpoch: 1_770_028_200_000))
        for _ in 0..<3000 { _ = try await capped.record(payload, tokenHash: DeviceToken.hash(token)) }
        try await h.withMonitor { client in
            @Sendable func shedCounted() async throws -> Double {
                let text = String(buffer: try await client.execute(uri: "/metrics", method: .get).body)
                return metricValue("monitor_history_stream_overflow_total", in: text) ?? 0
            }
            #expect(try await h.eventually(.seconds(5)) { try await shedCounted() > 0 })
            let stable = try await h.eventually(.seconds(8)) {
                let before = try await rows()
                try await Task.sleep(for: .milliseconds(500))
                return try await rows() == before && before > 1000
            }
            #expect(stable)
            let (shedBefore, rowsBefore) = (try await shedCounted(), try await rows())
            for _ in 0..<50 { try await h.beat(id, token: token) }
            #expect(try await h.eventually(.seconds(5)) { try await rows() == rowsBefore + 50 })
            // Redis restarts with its data (AOF)
            await h.server.stop()
            try await h.server.start(appendOnly: true)
            for _ in 0..<50 { _ = try? await h.beat(id, token: token) }
            #expect(try await h.eventually(.seconds(8)) { try await rows() == rowsBefore + 100 })
            try await Task.sleep(for: .seconds(1))
            #expect(try await shedCounted() == shedBefore, "rows reported shed after the restart that are all in PostgreSQL")
        }
        await h.shutdown()
    }

    @Test func devicesPostgreSQLHoldsOnlineButRedisLostAreReconciled() async throws {
        let h = try await MonitorHarness.start()
        let devices = try await h.register(2)
        let (silent, alive) = (devices[0], devices[1])
        try await h.withMonitor(["RECONCILE_INTERVAL_SECONDS": "0.5"]) { client in
            for (id, token) in devices { try await h.beat(id, token: token) }
            #expect(
                try await h.eventually(.seconds(3)) {
                    let statuses = [try await h.status(silent.0)?.status, try await h.status(alive.0)?.status]
                    return statuses == ["online", "online"]
                })
            // the silent device's last beat comes within OFFLINE_AFTER / 2 of its first: PostgreSQL has
            // it in history only (the column is written behind)
            try await Task.sleep(for: .milliseconds(300))
            guard case .recorded(let lastBeat, _, _) = try await h.beat(silent.0, token: silent.1) else {
                Issue.record("beat refused")
                return
            }
            #expect(
                try await h.eventually(.seconds(3)) {
                    try await h.database.connection.query("SELECT count(*) FROM heartbeat_history WHERE device_id = $1", [silent.0.string]).scalar
                        == "2"
                })
            // Redis loses both online-set entries (an AOF window, a replica promoted too early)
            for (id, _) in devices { try await h.redis.execute(["ZREM", h.keys.online(bucket: h.keys.bucket(of: id)), id.string]) }
            let lostAt = ContinuousClock.now
            let end = lostAt + .seconds(Self.offlineAfter + 3)
            while ContinuousClock.now < end {
                try await h.beat(alive.0, token: alive.1)
                try await Task.sleep(for: .milliseconds(300))
            }
            #expect(try await h.status(silent.0)?.status == "offline", "a silent device stayed online forever")
            #expect(try await h.events(silent.0).map(\.status) == ["online", "offline"])
            // restored with its newest heartbeat, so its silence is counted from that
            let offlineLast = try await h.database.connection.query(
                "SELECT iso(last_heartbeat) FROM device_status_events WHERE device_id = $1 AND to_status = 'offline'", [silent.0.string]
            ).scalar
            #expect(offlineLast == lastBeat.iso8601)
            #expect(try await h.events(alive.0).map(\.status) == ["online"])
            let metrics = String(buffer: try await client.execute(uri: "/metrics", method: .get).body)
            #expect(metrics.contains("monitor_reconcile_repaired_total "))
            #expect(!metrics.contains("monitor_reconcile_repaired_total 0\n"))
        }
        await h.shutdown()
    }

    /// Beats `device` once, waits `before`, kills the leader with `fault`, and measures when the
    /// device is declared offline against `OFFLINE_AFTER + failover + one scan`.
    @Test func aSilentDeviceIsOfflineInItsBoundAcrossALeaderKill() async throws {
        let h = try await MonitorHarness.start()
        let (id, token) = try await h.register(1)[0]
        let first = try await h.startMonitor(instance: "first")
        #expect(try await h.eventually(.seconds(3)) { try await h.leader() == "hbm-leader-first" })
        let second = try await h.startMonitor(instance: "second")
        try await h.beat(id, token: token)
        let beatAt = ContinuousClock.now
        #expect(try await h.eventually(.seconds(3)) { try await h.status(id)?.status == "online" })
        try await Task.sleep(until: beatAt + .milliseconds(1500))
        // SIGKILL of the leader: its session dies with it
        let killedAt = ContinuousClock.now
        await first.kill()
        _ = try await h.database.connection.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'hbm-leader-first'")
        #expect(try await h.eventually(.seconds(5)) { try await h.leader() == "hbm-leader-second" })
        let failover = Self.seconds(ContinuousClock.now - killedAt)
        #expect(try await h.eventually(.seconds(8)) { try await h.status(id)?.status == "offline" })
        let silence =
            try await h.database.connection.query(
                "SELECT extract(epoch FROM status_changed_at - last_heartbeat) FROM devices WHERE id = $1", [id.string]
            ).scalar.flatMap(Double.init) ?? -1
        let bound = Self.offlineAfter + failover + Self.scanInterval + 0.3
        print("RELIABILITY: leader kill: failover \(failover) s; silent device offline after \(silence) s of silence (bound \(bound) s)")
        #expect(silence >= Self.offlineAfter && silence <= bound, "offline after \(silence) s; bound \(bound) s")
        await second.stop()
        await h.shutdown()
    }

    @Test func aSilentDeviceIsOfflineInItsBoundAcrossAPostgreSQLRestart() async throws {
        let h = try await MonitorHarness.start()
        let (id, token) = try await h.register(1)[0]
        let monitor = try await h.startMonitor(instance: "only")
        #expect(try await h.eventually(.seconds(3)) { try await h.leader() == "hbm-leader-only" })
        try await h.beat(id, token: token)
        let beatAt = ContinuousClock.now
        #expect(try await h.eventually(.seconds(3)) { try await h.status(id)?.status == "online" })
        try await Task.sleep(until: beatAt + .milliseconds(1000))
        let restartedAt = ContinuousClock.now
        try await Services.run("stop", "postgres")
        try await Services.run("start", "postgres")
        let database = try await PostgresConnection.connect(url: h.database.url, applicationName: "test-after-restart")
        func leader() async throws -> String? {
            try await database.query(
                """
                SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                WHERE l.locktype = 'advisory' AND l.objid = $1 AND l.granted
                """, [String(PostgresLeaderLock.key)]
            ).scalar
        }
        #expect(try await h.eventually(.seconds(8)) { try await leader() == "hbm-leader-only" })
        let failover = Self.seconds(ContinuousClock.now - restartedAt)
        #expect(
            try await h.eventually(.seconds(8)) {
                try await database.query("SELECT status FROM devices WHERE id = $1", [id.string]).scalar == "offline"
            })
        let silence =
            try await database.query(
                "SELECT extract(epoch FROM status_changed_at - last_heartbeat) FROM devices WHERE id = $1", [id.string]
            ).scalar.flatMap(Double.init) ?? -1
        // the device became stale during the outage: it is declared at the first scan of the new term
        let bound = max(Self.offlineAfter, Self.seconds(restartedAt - beatAt) + failover) + Self.scanInterval + 0.5
        print(
            "RELIABILITY: PostgreSQL restart: lock back after \(failover) s; silent device offline after \(silence) s of silence (bound \(bound) s)")
        #expect(silence >= Self.offlineAfter && silence <= bound, "offline after \(silence) s; bound \(bound) s")
        await database.close()
        await monitor.stop()
        await h.shutdown()
    }

    @Test func aLeaderCutOffFromRedisHandsOverToTheStandby() async throws {
        let h = try await MonitorHarness.start()
        let (id, token) = try await h.register(1)[0]
        let proxy = try await TCPProxy.start(to: h.server.port)
        let cutOff = try await h.startMonitor(
            instance: "cut",
            [
                "REDIS_URL": proxy.url, "LEADER_REDIS_TIMEOUT_SECONDS": "1", "REDIS_TIMEOUT_SECONDS": "0.3",
            ])
        #expect(try await h.eventually(.seconds(3)) { try await h.leader() == "hbm-leader-cut" })
        let standby = try await h.startMonitor(instance: "standby", ["LEADER_REDIS_TIMEOUT_SECONDS": "1"])
        try await h.beat(id, token: token)
        #expect(try await h.eventually(.seconds(3)) { try await h.status(id)?.status == "online" })
        let cutAt = ContinuousClock.now
        await proxy.cut()
        #expect(try await h.eventually(.seconds(6)) { try await h.leader() == "hbm-leader-standby" })
        let handover = Self.seconds(ContinuousClock.now - cutAt)
        print("RELIABILITY: leader cut off from Redis: standby leads \(handover) s after the cut (LEADER_REDIS_TIMEOUT_SECONDS=1)")
        // the standby does the work: the silent device goes offline
        #expect(try await h.eventually(.seconds(6)) { try await h.status(id)?.status == "offline" })
        // and the cut-off instance does not take the lock back while it cannot reach Redis
        try await Task.sleep(for: .seconds(1.5))
        #expect(try await h.leader() == "hbm-leader-standby")
        await standby.stop()
        await cutOff.stop()
        await h.shutdown()
    }
}

/// `scripts/services.sh` for the services the test run shares (PostgreSQL, the Kafka mock).
enum Services {
    static func run(_ arguments: String...) async throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let status = await offPool { ChildProcess.runToCompletion("/bin/bash", [root.path + "/scripts/services.sh"] + arguments) }
        guard status == 0 else { throw TestFailure("services.sh \(arguments) exited \(status)") }
    }
}
