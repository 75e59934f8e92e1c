import Foundation
import HTTPTypes
import HeartbeatDomain
import HummingbirdTesting
import NIOCore
import Testing

@testable import Ingest

/// The gateway end to end on a real Redis.
@Suite struct GatewayRedisTests {
    @Test func aHeartbeatWritesExactlyTheDesignedKeys() async throws {
        let h = try await GatewayHarness.start()
        let id = DeviceID.random()
        let token = try await h.registry.register(device: id)
        let b = h.keys.bucket(of: id)
        try await h.withGateway { client in
            let response = try await client.heartbeat(id, token: token)
            #expect(response.status == .ok)
            let json = try response.json
            #expect(json["status"] as? String == "ok")
            let serverTime = try #require(UTCTimestamp(iso8601: json["server_time"] as? String ?? ""))
            #expect((json["server_time"] as? String)?.hasSuffix("Z") == true)

            let keys = try await h.redis.execute(["KEYS", "*"]).array?.compactMap(\.string).sorted()
            let markers = h.keys.allBuckets.map { h.keys.registryMarker(bucket: $0) } + [KeySchema.bucketCountKey]
            #expect(
                keys == ([h.keys.device(id), h.keys.history(bucket: b), h.keys.online(bucket: b), h.keys.transitions(bucket: b)] + markers).sorted())

            // online set: score is Redis time of the heartbeat
            let score = try await h.redis.execute(["ZSCORE", h.keys.online(bucket: b), id.string]).integer
            #expect(score == serverTime.millisecondsSinceEpoch)
            let redisNow = try await h.redis.execute(["TIME"]).array?.compactMap(\.integer) ?? []
            #expect(
                abs(UTCTimestamp(seconds: redisNow[0], microseconds: redisNow[1]).millisecondsSinceEpoch - serverTime.millisecondsSinceEpoch) < 2000)

            // device hash: token hash, latest payload, times
            let hash = try await Self.hash(h, h.keys.device(id))
            #expect(hash["token"] == String(DeviceToken.hash(token).prefix(32)))
            #expect(hash["last_heartbeat"] == String(serverTime.millisecondsSinceEpoch))
            // "n": no commands were waiting, so the next heartbeat does not read the list
            #expect(Set(hash.keys) == ["token", "last_heartbeat", "payload", "n"])
            #expect(hash["n"] == "1")
            let payload = try #require(hash["payload"].flatMap { HeartbeatPayload(storedForm: $0, deviceID: id) })
            #expect(payload.deviceTime == UTCTimestamp(iso8601: "2026-02-02T10:30:00Z"))
            #expect(payload.playerVersion == "1.2.3")
            #expect(payload.storage == .init(totalGB: 64, usedGB: 32))

            // one history row and one online transition
            let history = try await Self.stream(h, h.keys.history(bucket: b))
            #expect(history.count == 1)
            #expect(history.first?["d"] == id.string)
            #expect(history.first?["t"] == String(serverTime.millisecondsSinceEpoch))
            #expect(history.first?["p"] == hash["payload"])
            let transitions = try await Self.stream(h, h.keys.transitions(bucket: b))
            let transition = try #require(transitions.first.flatMap(StatusTransition.init(fields:)))
            #expect(transitions.count == 1)
            #expect(transition == StatusTransition(deviceID: id, kind: .online, at: serverTime, lastHeartbeat: serverTime))
        }
        await h.shutdown()
    }

    @Test func onlyTheFirstHeartbeatYieldsAnOnlineTransition() async throws {
        let h = try await GatewayHarness.start()
        let id = DeviceID.random()
        let token = try await h.registry.register(device: id)
        try await h.withGateway { client in
            for _ in 0..<5 { #expect(try await client.heartbeat(id, token: token).status == .ok) }
            let b = h.keys.bucket(of: id)
            #expect(try await Self.stream(h, h.keys.transitions(bucket: b)).count == 1)
            #expect(try await Self.stream(h, h.keys.history(bucket: b)).count == 5)
            // once the scanner has taken the device out of the online set, the next beat is a new transition
            try await h.redis.execute(["ZREM", h.keys.online(bucket: b), id.string])
            #expect(try await client.heartbeat(id, token: token).status == .ok)
            let transitions = try await Self.stream(h, h.keys.transitions(bucket: b))
            #expect(transitions.count == 2)
            #expect(transitions.allSatisfy { $0["type"] == "online" && $0["device"] == id.string })
        }
        await h.shutdown()
    }

    @Test func playlistFlagFollowsTheAssignment() async throws {
        let h = try await GatewayHarness.start()
        let id = DeviceID.random()
        let token = try await h.registry.register(device: id)
        try await h.withGateway { client in
            #expect(try await client.heartbeat(id, token: token, playlist: "a").json["playlist_updated"] as? Bool == false)
            try await h.registry.assignPlaylist("b", to: id)
            #expect(try await client.heartbeat(id, token: token, playlist: "a").json["playlist_updated"] as? Bool == true)
            #expect(try await client.heartbeat(id, token: token, playlist: nil).json["playlist_updated"] as? Bool == true)
            #expect(try await client.heartbeat(id, token: token, playlist: "b").json["playlist_updated"] as? Bool == false)
        }
        await h.shutdown()
    }

    @Test func commandsAreRepeatedUntilAcknowledgedAndExpiredOnesNever() async throws {
        let h = try await GatewayHarness.start()
        let id = DeviceID.random()
        let token = try await h.registry.register(device: id)
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let future = UTCTimestamp(millisecondsSinceEpoch: now + 600_000)
        let soon = UTCTimestamp(millisecondsSinceEpoch: now + 1500)
        for (command, type, expiry) in [("c1", "reboot", future), ("c0", "stale", soon), ("c2", "screenshot", future)] {
            let payload = command == "c2" ? #"{"q":1}"# : "{}"
            try await h.registry.enqueueCommand(
                id: command, type: type, json: #"{"id":"\#(command)","type":"\#(type)","payload":\#(payload)}"#,
                expiresAt: expiry, for: id)
        }
        @Sendable func body(acked: [String]) -> String {
            let list = acked.map { "\"\($0)\"" }.joined(separator: ",")
            return #"{"device_id":"\#(id)","timestamp":"2026-02-02T10:30:00Z","acked_commands":[\#(list)]}"#
        }
        try await h.withGateway { client in
            let first = try await client.heartbeat(id, token: token).json
            let commands = try #require(first["commands"] as? [[String: Any]])
            #expect(commands.map { $0["id"] as? String } == ["c1", "c0", "c2"])
            #expect((commands[2]["payload"] as? [String: Any])?["q"] as? Int == 1)
            // a lost reply loses nothing: the next heartbeat carries them again
            let second = try await client.heartbeat(id, token: token).json
            #expect((second["commands"] as? [[String: Any]])?.map { $0["id"] as? String } == ["c1", "c0", "c2"])
            try await Task.sleep(for: .milliseconds(1600))  // c0 expires unacknowledged
            let third = try await client.heartbeat(id, token: token, body: body(acked: ["c1", "unknown-id"])).json
            #expect((third["commands"] as? [[String: Any]])?.map { $0["id"] as? String } == ["c2"])
            let fourth = try await client.heartbeat(id, token: token, body: body(acked: ["c2"])).json
            #expect((fourth["commands"] as? [Any])?.isEmpty == true)
            // the list is empty now: the next heartbeat marks the device as having none, and later
            // heartbeats do not read the list (an entry pushed around the ops API is not seen) ...
            _ = try await client.heartbeat(id, token: token)
            #expect(try await h.redis.execute(["HGET", h.keys.device(id), "n"]) == .string("1"))
            try await h.redis.execute(["RPUSH", h.keys.commands(id), "\(now + 600_000)|{\"id\":\"stray\",\"type\":\"x\"}"])
            #expect((try await client.heartbeat(id, token: token).json["commands"] as? [Any])?.isEmpty == true)
            try await h.redis.execute(["DEL", h.keys.commands(id)])
            // ... until a command is queued, which clears the mark
            try await h.registry.enqueueCommand(
                id: "c3", type: "reboot", json: #"{"id":"c3","type":"reboot","payload":{}}"#, expiresAt: future, for: id)
            #expect(try await h.redis.execute(["HGET", h.keys.device(id), "n"]) == .null)
            let fifth = try await client.heartbeat(id, token: token).json
            #expect((fifth["commands"] as? [[String: Any]])?.map { $0["id"] as? String } == ["c3"])
            _ = try await client.heartbeat(id, token: token, body: body(acked: ["c3"]))
        }
        #expect(try await h.redis.execute(["EXISTS", h.keys.commands(id)]) == .integer(0))
        let states = try await h.registry.commands(of: id, nowMs: Int64(Date().timeIntervalSince1970 * 1000))
        let byID = Dictionary(uniqueKeysWithValues: states.map { ($0.id, $0) })
        #expect(byID["c1"]?.state == .acknowledged && byID["c1"]?.deliveries == 2)
        #expect(byID["c0"]?.state == .expired && byID["c0"]?.deliveries == 2)
        #expect(byID["c2"]?.state == .acknowledged && byID["c2"]?.deliveries == 3)
        #expect(byID["c2"]?.lastDeliveredAtMs != nil && byID["c2"]?.settledAtMs != nil)
        await h.shutdown()
    }

    @Test func aCommandSurvivesAReplyTheDeviceNeverRead() async throws {
        let h = try await GatewayHarness.start()
        let id = DeviceID.random()
        let token = try await h.registry.register(device: id)
        let expiry = UTCTimestamp(millisecondsSinceEpoch: Int64(Date().timeIntervalSince1970 * 1000) + 600_000)
        try await h.registry.enqueueCommand(
            id: "reboot-1", type: "reboot", json: #"{"id":"reboot-1","type":"reboot","payload":{}}"#,
            expiresAt: expiry, for: id)
        try await h.withGateway { client in
            guard let port = client.port else {
                Issue.record("no port")
                return
            }
            // the player sends its heartbeat and the connection drops before it reads the reply
            let body = #"{"device_id":"\#(id)","timestamp":"2026-02-02T10:30:00Z"}"#
            let request =
                "POST /api/v1/devices/\(id)/heartbeat HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer \(token)\r\n"
                + "Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
            guard let fd = RawSocket.open(port: port) else {
                Issue.record("no connection")
                return
            }
            RawSocket.sendAndClose(fd, request)
            #expect(try await eventually { try await h.redis.execute(["HGET", h.keys.device(id), "last_heartbeat"]).integer != nil })
            // its next heartbeat still carries the command
            let next = try await client.heartbeat(id, token: token).json
            #expect((next["commands"] as? [[String: Any]])?.map { $0["id"] as? String } == ["reboot-1"])
        }
        await h.shutdown()
    }

    @Test func anUnknownDeviceGets503WhileTheRegistryIsNotLoaded() async throws {
        let h = try await GatewayHarness.start()
        let id = DeviceID.random()
        let token = try await h.registry.register(device: id)
        try await h.withGateway { client in
            try await h.redis.execute(["FLUSHALL"])  // Redis lost its data: the device may well be registered
            let lost = try await client.heartbeat(id, token: token)
            #expect(lost.status == .serviceUnavailable)
            #expect(try lost.json["error"] as? String == "registry_loading")
            let retryAfter = try #require(lost.headers[.retryAfter].flatMap { Int($0) })
            #expect((1...5).contains(retryAfter))
            // once the bucket is loaded again, an id it does not hold is unknown
            try await h.registry.markLoaded(buckets: Array(h.keys.allBuckets))
            #expect(try await client.heartbeat(id, token: token).status == .notFound)
        }
        await h.shutdown()
    }

    @Test func everyErrorStatus() async throws {
        let h = try await GatewayHarness.start()
        let id = DeviceID.random()
        let other = DeviceID.random()
        let unknown = DeviceID.random()
        let token = try await h.registry.register(device: id)
        let otherToken = try await h.registry.register(device: other)
        try await h.withGateway(["HEARTBEAT_MIN_INTERVAL_SECONDS": "30"]) { client in
            #expect(try await client.heartbeat(id, token: nil).status == .unauthorized)
            #expect(try await client.heartbeat(id, token: "nope").status == .unauthorized)
            #expect(try await client.heartbeat(id, token: otherToken).status == .unauthorized)
            #expect(try await client.heartbeat(unknown, token: token).status == .notFound)
            #expect(try await client.heartbeat(id, token: token, body: "{}").status == .badRequest)
            #expect(
                try await client.heartbeat(id, token: token, body: #"{"device_id":"\#(other)","timestamp":"2026-02-02T10:30:00Z"}"#).status
                    == .badRequest)
            let big = #"{"device_id":"\#(id)","timestamp":"2026-02-02T10:30:00Z","pad":"\#(String(repeating: "x", count: 17_000))"}"#
            let tooLarge = try await client.heartbeat(id, token: token, body: big)
            #expect(tooLarge.status == .contentTooLarge)
            #expect(try tooLarge.json["error"] as? String == "body_too_large")
            #expect(try await client.heartbeat(id, token: token).status == .ok)
            let frequent = try await client.heartbeat(id, token: token)
            #expect(frequent.status == .tooManyRequests)
            #expect(frequent.headers[.retryAfter] != nil)
            // refused attempts record nothing
            #expect(try await Self.stream(h, h.keys.history(bucket: h.keys.bucket(of: id))).count == 1)
        }
        await h.shutdown()
    }

    @Test func anOversizedBodyIsRefusedBeforeItIsSent() async throws {
        let h = try await GatewayHarness.start()
        let id = DeviceID.random()
        let token = try await h.registry.register(device: id)
        try await h.withGateway { client in
            let port = try #require(client.port)
            let head =
                "POST /api/v1/devices/\(id)/heartbeat HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(token)\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n{"
            let reply =
                await offPool { RawSocket.exchange(port: port, send: Array(head.utf8), timeout: .seconds(2)) }.map {
                    String(decoding: $0, as: UTF8.self)
                } ?? ""
            #expect(reply.hasPrefix("HTTP/1.1 413"), "\(reply)")
            #expect(reply.contains("body_too_large"))
        }
        await h.shutdown()
    }

    @Test func redisDownIsAFast503AndARestartRecoversWithoutTheGateway() async throws {
        let h = try await GatewayHarness.start(appendOnly: true)
        let id = DeviceID.random()
        let token = try await h.registry.register(device: id)
        try await h.redis.execute(["CONFIG", "SET", "appendfsync", "always"])
        try await h.withGateway { client in
            #expect(try await client.heartbeat(id, token: token).status == .ok)
            await h.server.stop()
            for _ in 0..<5 {
                let started = ContinuousClock.now
                let response = try await client.heartbeat(id, token: token)
                #expect(response.status == .serviceUnavailable)
                #expect(response.headers[.retryAfter].flatMap { Int($0) }.map { (1...5).contains($0) } == true)
                #expect(try response.json["error"] as? String == "unavailable")
                #expect(ContinuousClock.now - started < .seconds(1))
            }
            #expect(try await client.execute(uri: "/readyz", method: .get).status == .serviceUnavailable)
            #expect(try await client.execute(uri: "/healthz", method: .get).status == .ok)

            // Redis comes back with its data but an empty script cache: NOSCRIPT must be handled.
            try await h.server.start(appendOnly: true)
            #expect(try await h.redis.execute(["SCRIPT", "EXISTS", HeartbeatScript.script.sha1]) == .array([.integer(0)]))
            var recovered = false
            for _ in 0..<20 where !recovered {
                recovered = try await client.heartbeat(id, token: token).status == .ok
                if !recovered { try await Task.sleep(for: .milliseconds(50)) }
            }
            #expect(recovered)
            #expect(try await client.execute(uri: "/readyz", method: .get).status == .ok)
            #expect(try await h.redis.execute(["SCRIPT", "EXISTS", HeartbeatScript.script.sha1]) == .array([.integer(1)]))
        }
        await h.shutdown()
    }

    @Test func metricsCountRequestsByRouteAndStatus() async throws {
        let h = try await GatewayHarness.start()
        let id = DeviceID.random()
        let token = try await h.registry.register(device: id)
        try await h.withGateway { client in
            _ = try await client.heartbeat(id, token: token)
            _ = try await client.heartbeat(id, token: "wrong")
            let text = String(buffer: try await client.execute(uri: "/metrics", method: .get).body)
            #expect(text.contains(#"http_requests_total{route="/api/v1/devices/{id}/heartbeat",method="POST",status="200"}"#), "\(text)")
            // (one registry per process: counts include other tests)
            #expect(text.contains(#"http_requests_total{route="/api/v1/devices/{id}/heartbeat",method="POST",status="401"}"#))
            #expect(text.contains("heartbeat_request_duration"))
            #expect(text.contains("http_requests_in_flight"))
        }
        await h.shutdown()
    }

    static func hash(_ h: GatewayHarness, _ key: String) async throws -> [String: String] {
        let flat = try await h.redis.execute(["HGETALL", key]).array?.compactMap(\.string) ?? []
        return Dictionary(uniqueKeysWithValues: stride(from: 0, to: flat.count, by: 2).map { (flat[$0], flat[$0 + 1]) })
    }

    static func stream(_ h: GatewayHarness, _ key: String) async throws -> [[String: String]] {
        let entries = try await h.redis.execute(["XRANGE", key, "-", "+"]).array ?? []
        return entries.map { entry in
            let fields = entry.array?.last?.array?.compactMap(\.string) ?? []
            return Dictionary(uniqueKeysWithValues: stride(from: 0, to: fields.count, by: 2).map { (fields[$0], fields[$0 + 1]) })
        }
    }
}
