import Foundation
import HTTPTypes
import HeartbeatDomain
import HummingbirdTesting
import NIOCore
import Testing

@testable import Ingest
@testable import Monitor

/// The ops API end to end on real Redis, PostgreSQL and the Kafka mock.
@Suite(.serialized) struct OpsAPITests {
    static let auth: HTTPFields = [.authorization: "Bearer \(MonitorHarness.adminToken)", .contentType: "application/json"]

    static func call(
        _ client: some TestClientProtocol, _ method: HTTPRequest.Method, _ uri: String, _ body: String? = nil,
        auth: Bool = true
    ) async throws -> (status: HTTPResponse.Status, json: [String: Any]) {
        let response = try await client.execute(
            uri: uri, method: method, headers: auth ? Self.auth : [.contentType: "application/json"],
            body: body.map { ByteBuffer(string: $0) })
        let json = (try? JSONSerialization.jsonObject(with: Data(response.body.readableBytesView))) as? [String: Any] ?? [:]
        return (response.status, json)
    }

    /// Registers a device through the ops API; its id and token.
    static func register(_ client: some TestClientProtocol, name: String) async throws -> (id: DeviceID, token: String) {
        let created = try await call(client, .post, "/api/v1/devices", #"{"name":"\#(name)"}"#)
        #expect(created.status == .created)
        return (try #require((created.json["id"] as? String).flatMap { DeviceID($0) }), try #require(created.json["token"] as? String))
    }

    @Test func registrationTokensAndErrors() async throws {
        let h = try await MonitorHarness.start()
        try await h.withMonitor { client in
            #expect(try await Self.call(client, .post, "/api/v1/devices", #"{"name":"lobby"}"#, auth: false).status == .unauthorized)
            let (id, token) = try await Self.register(client, name: "lobby screen")
            #expect(token.count == 43)
            // only the hash is stored
            #expect(
                try await h.database.connection.query("SELECT token_hash FROM devices WHERE id = $1", [id.string]).scalar == DeviceToken.hash(token))
            guard case .recorded = try await h.beat(id, token: token) else {
                Issue.record("the new token does not work")
                return
            }

            let chosen = DeviceID.random()
            #expect(try await Self.call(client, .post, "/api/v1/devices", #"{"id":"\#(chosen)","name":"a"}"#).status == .created)
            let duplicate = try await Self.call(client, .post, "/api/v1/devices", #"{"id":"\#(chosen)","name":"b"}"#)
            #expect(duplicate.status == .conflict)
            #expect(duplicate.json["error"] as? String == "device_exists")
            for bad in [
                #"{"name":""}"#, #"{"id":"nope","name":"x"}"#, #"{"name":5}"#, "{", "[]", #"{}"#,
                #"{"name":"a\u0000b"}"#, #"{"name":"line\nbreak"}"#,
            ] {
                let response = try await Self.call(client, .post, "/api/v1/devices", bad)
                #expect(response.status == .badRequest, "\(bad)")
                #expect(response.json["error"] as? String == "invalid_body", "\(bad)")
            }

            let rotated = try await Self.call(client, .post, "/api/v1/devices/\(id)/token")
            #expect(rotated.status == .ok)
            let newToken = try #require(rotated.json["token"] as? String)
            #expect(try await h.beat(id, token: token) == .wrongToken)
            guard case .recorded = try await h.beat(id, token: newToken) else {
                Issue.record("the rotated token does not work")
                return
            }
            #expect(try await Self.call(client, .post, "/api/v1/devices/\(DeviceID.random())/token").status == .notFound)
            #expect(try await Self.call(client, .post, "/api/v1/devices/not-a-uuid/token").status == .badRequest)
        }
        await h.shutdown()
    }

    @Test func playlistsAndCommandsReachTheNextHeartbeat() async throws {
        let h = try await MonitorHarness.start()
        try await h.withMonitor { client in
            let (id, token) = try await Self.register(client, name: "door")
            let playlist = DeviceID.random()
            #expect(try await Self.call(client, .put, "/api/v1/devices/\(id)/playlist", #"{"playlist_id":"\#(playlist)"}"#).status == .ok)
            #expect(try await Self.call(client, .put, "/api/v1/devices/\(id)/playlist", #"{"playlist_id":"x"}"#).status == .badRequest)
            #expect(
                try await Self.call(client, .put, "/api/v1/devices/\(DeviceID.random())/playlist", #"{"playlist_id":"\#(playlist)"}"#).status
                    == .notFound)

            let queued = try await Self.call(
                client, .post, "/api/v1/devices/\(id)/commands", #"{"type":"reboot","payload":{"delay":5},"ttl_seconds":60}"#)
            #expect(queued.status == .accepted)
            let commandID = try #require(queued.json["id"] as? String)
            _ = try await Self.call(client, .post, "/api/v1/devices/\(id)/commands", #"{"type":"flash","ttl_seconds":1}"#)
            try await Task.sleep(for: .milliseconds(1200))  // the second one expires
            guard case .recorded(_, let assigned, let commands) = try await h.beat(id, token: token) else {
                Issue.record("beat failed")
                return
            }
            #expect(assigned == playlist.string)
            #expect(commands.count == 1)
            let command = try #require(commands.first.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] })
            #expect(command["id"] as? String == commandID)
            #expect(command["type"] as? String == "reboot")
            #expect((command["payload"] as? [String: Any])?["delay"] as? Int == 5)
            #expect(UTCTimestamp(iso8601: command["expires_at"] as? String ?? "") != nil)
            // delivered at least once: repeated until the device acknowledges it
            guard case .recorded(_, _, let again) = try await h.beat(id, token: token) else { return }
            #expect(again == commands)
            var shown = try await Self.call(client, .get, "/api/v1/devices/\(id)").json["commands"] as? [[String: Any]] ?? []
            var byID = Dictionary(shown.compactMap { c in (c["id"] as? String).map { ($0, c) } }, uniquingKeysWith: { a, _ in a })
            #expect(byID[commandID]?["state"] as? String == "delivered")
            #expect(byID[commandID]?["deliveries"] as? Int == 2)
            #expect(UTCTimestamp(iso8601: byID[commandID]?["last_delivered_at"] as? String ?? "") != nil)
            #expect(byID.values.contains { $0["type"] as? String == "flash" && $0["state"] as? String == "expired" })
            guard case .recorded(_, _, let acked) = try await h.beat(id, token: token, acked: [commandID]) else { return }
            #expect(acked.isEmpty)
            shown = try await Self.call(client, .get, "/api/v1/devices/\(id)").json["commands"] as? [[String: Any]] ?? []
            byID = Dictionary(shown.compactMap { c in (c["id"] as? String).map { ($0, c) } }, uniquingKeysWith: { a, _ in a })
            #expect(byID[commandID]?["state"] as? String == "acknowledged")
            #expect(UTCTimestamp(iso8601: byID[commandID]?["acknowledged_at"] as? String ?? "") != nil)

            for bad in [#"{"type":""}"#, #"{"type":"x","ttl_seconds":0}"#, #"{"type":"x","payload":[1]}"#, #"{"payload":{}}"#] {
                #expect(try await Self.call(client, .post, "/api/v1/devices/\(id)/commands", bad).status == .badRequest, "\(bad)")
            }
            for _ in 0..<100 { _ = try await Self.call(client, .post, "/api/v1/devices/\(id)/commands", #"{"type":"noop"}"#) }
            let full = try await Self.call(client, .post, "/api/v1/devices/\(id)/commands", #"{"type":"noop"}"#)
            #expect(full.status == .conflict)
            #expect(full.json["error"] as? String == "command_queue_full")
        }
        await h.shutdown()
    }

    @Test func devicesStatusHistoryEventsAndUptime() async throws {
        let h = try await MonitorHarness.start()
        try await h.withMonitor { client in
            var devices: [(id: DeviceID, token: String)] = []
            for index in 0..<5 { devices.append(try await Self.register(client, name: "d\(index)")) }
            let (id, token) = devices[0]
            for _ in 0..<3 { try await h.beat(id, token: token) }
            #expect(try await h.eventually(.seconds(3)) { try await h.status(id)?.status == "online" })

            // keyset pagination, stable order, filter
            var seen: [String] = []
            var cursor: String?
            repeat {
                let page = try await Self.call(client, .get, "/api/v1/devices?limit=2" + (cursor.map { "&cursor=\($0)" } ?? ""))
                #expect(page.status == .ok)
                let items = page.json["devices"] as? [[String: Any]] ?? []
                #expect(items.count <= 2)
                seen += items.compactMap { $0["id"] as? String }
                cursor = page.json["next_cursor"] as? String
            } while cursor != nil
            #expect(seen == devices.map(\.0.string).sorted())
            let online = try await Self.call(client, .get, "/api/v1/devices?status=online")
            #expect((online.json["devices"] as? [[String: Any]])?.compactMap { $0["id"] as? String } == [id.string])
            #expect(try await Self.call(client, .get, "/api/v1/devices?status=sideways").status == .badRequest)
            #expect(try await Self.call(client, .get, "/api/v1/devices?limit=5000").status == .badRequest)
            #expect(try await Self.call(client, .get, "/api/v1/devices?cursor=%%%").status == .badRequest)

            let detail = try await Self.call(client, .get, "/api/v1/devices/\(id)")
            #expect(detail.status == .ok)
            #expect(detail.json["status"] as? String == "online")
            #expect(detail.json["status_version"] as? Int == 1)
            #expect(detail.json["name"] as? String == "d0")
            let latest = try #require(detail.json["latest"] as? [String: Any])
            #expect((latest["payload"] as? [String: Any])?["device_id"] as? String == id.string)
            #expect(latest["device_time"] as? String == "2026-02-02T10:30:00.000Z")
            #expect(latest["clock_offset_ms"] is Int)
            #expect(try await Self.call(client, .get, "/api/v1/devices/\(DeviceID.random())").status == .notFound)

            // history rows arrive through the history writer, newest first
            #expect(
                try await h.eventually(.seconds(5)) {
                    ((try await Self.call(client, .get, "/api/v1/devices/\(id)/heartbeats").json["heartbeats"] as? [Any])?.count ?? 0) == 3
                })
            let history = try await Self.call(client, .get, "/api/v1/devices/\(id)/heartbeats?limit=2")
            let rows = history.json["heartbeats"] as? [[String: Any]] ?? []
            #expect(rows.count == 2)
            let times = rows.compactMap { ($0["received_at"] as? String).flatMap { UTCTimestamp(iso8601: $0) } }
            #expect(times.count == 2 && times[0] >= times[1])
            // what the history writer's binary COPY put in each column
            #expect(rows.first?["device_time"] as? String == "2026-02-02T10:30:00.000Z")
            #expect((rows.first?["payload"] as? [String: Any])?["device_id"] as? String == id.string)
            #expect(try await Self.call(client, .get, "/api/v1/devices/\(id)/heartbeats?from=yesterday").status == .badRequest)

            // silent: offline, then events newest first, and an uptime figure
            #expect(try await h.eventually(.seconds(6)) { try await h.status(id)?.status == "offline" })
            let events = try await Self.call(client, .get, "/api/v1/devices/\(id)/events")
            let list = events.json["events"] as? [[String: Any]] ?? []
            #expect(list.compactMap { $0["to"] as? String } == ["offline", "online"])
            #expect(list.compactMap { $0["status_version"] as? Int } == [2, 1])
            let uptime = try await Self.call(client, .get, "/api/v1/devices/\(id)/uptime")
            let fraction = try #require(uptime.json["online_fraction"] as? Double)
            // about 2 s online of the few seconds since it was registered (not of the whole 24 h)
            #expect(fraction > 0.1 && fraction < 1, "\(fraction)")
            #expect((uptime.json["online_seconds"] as? Double).map { $0 >= 1.5 && $0 < 10 } == true)
        }
        await h.shutdown()
    }

    @Test func aFlushedRedisIsReseededFromPostgreSQL() async throws {
        let h = try await MonitorHarness.start()
        try await h.withMonitor { client in
            let (id, token) = try await Self.register(client, name: "kiosk")
            let playlist = DeviceID.random()
            _ = try await Self.call(client, .put, "/api/v1/devices/\(id)/playlist", #"{"playlist_id":"\#(playlist)"}"#)
            try await h.redis.execute(["FLUSHALL"])
            // until the registry is back, the device is told to retry, not that it is unknown
            #expect(try await h.beat(id, token: token) == .registryNotLoaded)
            #expect(
                try await h.eventually(.seconds(5)) {
                    if case .recorded(_, let assigned, _) = try await h.beat(id, token: token) { return assigned == playlist.string }
                    return false
                })
        }
        await h.shutdown()
    }

    @Test func historyPartitionsAreKeptAheadAndDroppedPastRetention() async throws {
        let h = try await MonitorHarness.start()
        try await h.withMonitor(["HISTORY_RETENTION_DAYS": "1"]) { _ in
            let partitions = "SELECT count(*) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'heartbeat_history'"
            #expect(try await h.eventually(.seconds(3)) { try await h.database.connection.query(partitions).scalar == "5" })
            try await h.database.connection.query("SELECT ensure_history_partition(current_date - 40)")
            #expect(try await h.database.connection.query(partitions).scalar == "6")
            #expect(try await h.database.connection.query("SELECT drop_history_partitions_before(current_date - 1)").scalar == "1")
        }
        await h.shutdown()
    }

    @Test func rowsShedByTheHistoryStreamCapAreCountedAndLogged() async throws {
        let h = try await MonitorHarness.start()
        let (id, token) = try await h.register(1)[0]
        let tightlyCapped = RedisHeartbeatStore(redis: h.redis, keys: h.keys, minimumInterval: .zero, historyStreamCap: 1000)
        // the writer reads the first beat, so its group has a position in the stream
        try await h.withMonitor { _ in
            try await h.beat(id, token: token)
            #expect(
                try await h.eventually(.seconds(5)) {
                    try await h.database.connection.query("SELECT count(*) FROM heartbeat_history").scalar == "1"
                })
            // a written row leaves the stream: it holds only what is not in PostgreSQL yet
            #expect(
                try await h.eventually(.seconds(5)) {
                    try await h.redis.execute(["XLEN", h.keys.history(bucket: h.keys.bucket(of: id))]).integer == 0
                })
        }
        // while no monitor runs, far more beats than the cap: the oldest unread ones are trimmed
        let payload = HeartbeatPayload(deviceID: id, deviceTime: UTCTimestamp(millisecondsSinceEpoch: 1_770_028_200_000))
        for _ in 0..<3000 { _ = try await tightlyCapped.record(payload, tokenHash: DeviceToken.hash(token)) }
        try await h.withMonitor { client in
            @Sendable func shedCounted() async throws -> Bool {
                let text = String(buffer: try await client.execute(uri: "/metrics", method: .get).body)
                return text.contains("monitor_history_stream_overflow_total ") && !text.contains("monitor_history_stream_overflow_total 0")
            }
            @Sendable func survivorsWritten() async throws -> Bool {
                let rows = Int(try await h.database.connection.query("SELECT count(*) FROM heartbeat_history").scalar ?? "0") ?? 0
                return rows > 1000 && rows < 3001
            }
            let shed = try await h.eventually(.seconds(5)) { try await shedCounted() }
            #expect(shed, "the shed rows were not counted")
            // what survived the cap is written; the shed rows are not invented
            let survivors = try await h.eventually(.seconds(5)) { try await survivorsWritten() }
            #expect(survivors)
        }
        await h.shutdown()
    }
}
