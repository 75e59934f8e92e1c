import Configuration
import Foundation
import HTTPTypes
import HeartbeatDomain
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import RedisAdapter
import ServerSupport
import Testing

@testable import Ingest

/// The heartbeat route over the in-memory store: every status the API promises, without Redis.
/// Each test runs twice: through Hummingbird's router, and on a live socket where
/// ``HeartbeatWireHandler`` answers heartbeats on the event loop; both must answer the same.
@Suite struct HeartbeatRouteTests {
    /// Who answers the heartbeat.
    enum Path: String, CaseIterable, CustomTestStringConvertible {
        case router, eventLoop
        var testDescription: String { rawValue }
    }

    let id = DeviceID.random()
    let token = DeviceToken.generate()
    let store = InMemoryHeartbeatStore()

    init() {
        store.register(id, tokenHash: DeviceToken.hash(token), playlist: "pl-2")
    }

    func body(id: DeviceID? = nil, playlist: String = "pl-1", extra: String = "") -> ByteBuffer {
        ByteBuffer(
            string: #"{"device_id":"\#((id ?? self.id).string)","timestamp":"2026-02-02T10:30:00Z","current_playlist":"\#(playlist)"\#(extra)}"#)
    }

    func withApp(
        _ path: Path, store: (any HeartbeatStore)? = nil, _ test: @Sendable (any TestClientProtocol) async throws -> Void
    ) async throws {
        switch path {
        case .router:
            let router = buildRouter(store: store ?? self.store, metricsRegistry: TestMetrics.registry)
            try await Application(router: router).test(.router, test)
        case .eventLoop:
            let configuration = try IngestConfiguration(
                reader: ConfigReader(provider: EnvironmentVariablesProvider(environmentVariables: ["HTTP_HOST": "127.0.0.1", "HTTP_PORT": "0"])))
            var logger = Logger(label: "gateway-under-test")
            logger.logLevel = .critical
            let app = buildApplication(
                configuration: configuration, store: store ?? self.store, metricsRegistry: TestMetrics.registry, logger: logger)
            try await app.test(.live, test)
        }
    }

    func post(_ client: some TestClientProtocol, path: String? = nil, token: String?, body: ByteBuffer) async throws -> TestResponse {
        var headers: HTTPFields = [.contentType: "application/json"]
        if let token { headers[.authorization] = "Bearer \(token)" }
        return try await client.execute(uri: path ?? "/api/v1/devices/\(id)/heartbeat", method: .post, headers: headers, body: body)
    }

    static func json(_ response: TestResponse) throws -> [String: Any] {
        try #require(JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any])
    }

    @Test(arguments: Path.allCases) func acceptsAHeartbeat(path: Path) async throws {
        store.enqueue(command: "c1", json: #"{"id":"c1","type":"reboot"}"#, expiresAt: .init(millisecondsSinceEpoch: Int64.max), for: id)
        try await withApp(path) { client in
            let response = try await post(client, token: token, body: body())
            #expect(response.status == .ok)
            #expect(response.headers[.contentType] == "application/json")
            let json = try Self.json(response)
            #expect(json["status"] as? String == "ok")
            #expect(UTCTimestamp(iso8601: json["server_time"] as? String ?? "") != nil)
            #expect(json["playlist_updated"] as? Bool == true)
            let commands = try #require(json["commands"] as? [[String: Any]])
            #expect(commands.count == 1 && commands.first?["id"] as? String == "c1")
            // at least once: repeated until the device acknowledges it
            let again = try Self.json(try await post(client, token: token, body: body(playlist: "pl-2")))
            #expect((again["commands"] as? [[String: Any]])?.first?["id"] as? String == "c1")
            #expect(again["playlist_updated"] as? Bool == false)
            let acked = try Self.json(try await post(client, token: token, body: body(playlist: "pl-2", extra: #","acked_commands":["c1"]"#)))
            #expect((acked["commands"] as? [Any])?.isEmpty == true)
        }
        #expect(store.device(id)?.latest?.currentPlaylist == "pl-2")
    }

    @Test(arguments: Path.allCases) func refusesBadRequestsWithJSONErrors(path: Path) async throws {
        let other = DeviceID.random()
        let cases: [(String?, String?, ByteBuffer, HTTPResponse.Status, String)] = [
            ("/api/v1/devices/not-a-uuid/heartbeat", token, body(), .badRequest, "invalid_device_id"),
            (nil, token, body(id: other), .badRequest, "device_id_mismatch"),
            (nil, token, ByteBuffer(string: "{not json"), .badRequest, "invalid_body"),
            (nil, token, ByteBuffer(string: #"{"device_id":"\#(id)","timestamp":"yesterday"}"#), .badRequest, "invalid_body"),
            (nil, token, body(extra: #","storage_status":{"total_gb":-1,"used_gb":0}"#), .badRequest, "invalid_body"),
            (nil, token, body(extra: #","acked_commands":"c1""#), .badRequest, "invalid_body"),
            (nil, token, body(extra: #","acked_commands":[1]"#), .badRequest, "invalid_body"),
            (nil, token, body(extra: #","acked_commands":["has space"]"#), .badRequest, "invalid_body"),
            (nil, nil, body(), .unauthorized, "missing_token"),
            (nil, "", body(), .unauthorized, "missing_token"),
            (nil, "wrong", body(), .unauthorized, "invalid_token"),
            ("/api/v1/devices/\(other)/heartbeat", token, body(id: other), .notFound, "unknown_device"),
            (nil, token, ByteBuffer(repeating: UInt8(ascii: " "), count: 16 * 1024 + 1), .contentTooLarge, "body_too_large"),
        ]
        try await withApp(path) { client in
            for (index, (path, token, body, status, code)) in cases.enumerated() {
                let response = try await post(client, path: path, token: token, body: body)
                #expect(response.status == status, "case \(index)")
                #expect(response.headers[.contentType] == "application/json", "case \(index)")
                let json = try Self.json(response)
                #expect(json["error"] as? String == code, "case \(index): \(json)")
                #expect((json["message"] as? String)?.isEmpty == false, "case \(index)")
            }
        }
    }

    @Test(arguments: Path.allCases) func aTokenOfAnotherDeviceIsWrong(path: Path) async throws {
        let other = DeviceID.random()
        let otherToken = DeviceToken.generate()
        store.register(other, tokenHash: DeviceToken.hash(otherToken))
        try await withApp(path) { client in
            let response = try await post(client, token: otherToken, body: body())
            #expect(response.status == .unauthorized)
        }
    }

    @Test(arguments: Path.allCases) func tooFrequentHeartbeatsGet429WithRetryAfter(path: Path) async throws {
        let store = InMemoryHeartbeatStore(minimumInterval: .seconds(30))
        store.register(id, tokenHash: DeviceToken.hash(token))
        try await withApp(path, store: store) { client in
            #expect(try await post(client, token: token, body: body()).status == .ok)
            let response = try await post(client, token: token, body: body())
            #expect(response.status == .tooManyRequests)
            let retry = try #require(response.headers[.retryAfter].flatMap(Int.init))
            #expect((29...30).contains(retry))
        }
    }

    @Test(arguments: Path.allCases) func storeFailureIs503WithRetryAfter(path: Path) async throws {
        store.failure.withLock { $0 = RedisError.unavailable("connection refused") }
        try await withApp(path) { client in
            // Retry-After is jittered (1 to 5 s) so a fleet does not retry in lockstep
            var seen = Set<String>()
            for _ in 0..<40 {
                let response = try await post(client, token: token, body: body())
                #expect(response.status == .serviceUnavailable)
                seen.insert(response.headers[.retryAfter] ?? "none")
            }
            #expect(seen.isSubset(of: ["1", "2", "3", "4", "5"]) && seen.count > 1, "\(seen)")
            let response = try await post(client, token: token, body: body())
            #expect(try Self.json(response)["error"] as? String == "unavailable")
            #expect(try await client.execute(uri: "/readyz", method: .get).status == .serviceUnavailable)
            #expect(try await client.execute(uri: "/healthz", method: .get).status == .ok)
        }
    }

    @Test(arguments: Path.allCases) func aServedPathWithAnotherMethodIs405WithAllow(path: Path) async throws {
        try await withApp(path) { client in
            let response = try await client.execute(uri: "/api/v1/devices/\(id)/heartbeat", method: .get)
            #expect(response.status == .methodNotAllowed)
            #expect(response.headers[.allow] == "POST")
            #expect(try Self.json(response)["error"] as? String == "method_not_allowed")
            let health = try await client.execute(uri: "/healthz", method: .delete)
            #expect(health.status == .methodNotAllowed && health.headers[.allow] == "GET, HEAD")
            #expect(try await client.execute(uri: "/api/v1/nothing", method: .get).status == .notFound)
        }
    }

    @Test(arguments: Path.allCases) func healthAndMetrics(path: Path) async throws {
        try await withApp(path) { client in
            #expect(try await client.execute(uri: "/healthz", method: .get).status == .ok)
            #expect(try await client.execute(uri: "/readyz", method: .get).status == .ok)
            _ = try await post(client, token: "wrong", body: body())
            let metrics = try await client.execute(uri: "/metrics", method: .get)
            #expect(metrics.status == .ok)
            let text = String(buffer: metrics.body)
            #expect(text.contains("heartbeat_outcomes_total"))
            #expect(text.contains("heartbeat_request_duration"))
            #expect(text.contains("http_requests_total"))
            #expect(text.contains("http_requests_in_flight"))
        }
    }

    @Test func theEventLoopAnswersOnlyHeartbeatsItCanAnswerAsTheRouteWould() {
        func id(_ path: String, _ fields: HTTPFields = [:], method: HTTPRequest.Method = .post) -> String? {
            HeartbeatChannelHandler.heartbeatDeviceID(HTTPRequest(method: method, scheme: nil, authority: nil, path: path, headerFields: fields))
                .map(String.init)
        }
        let uuid = "0b6e2a58-4a63-4d4e-9d8f-7c1f3c2b1a00"
        #expect(id("/api/v1/devices/\(uuid)/heartbeat") == uuid)
        #expect(id("/api/v1/devices/\(uuid)/heartbeat?x=1") == uuid)  // the router ignores the query too
        #expect(id("/api/v1/devices/not-a-uuid/heartbeat") == "not-a-uuid")  // answered 400 here, as the route would
        #expect(id("/api/v1/devices/\(uuid)/heartbeat", [.connection: "Keep-Alive"]) == uuid)
        // left to the router:
        #expect(id("/api/v1/devices/\(uuid)/heartbeat", method: .get) == nil)
        #expect(id("/api/v1/devices/\(uuid)/heartbeat/") == nil)
        #expect(id("/api/v1/devices//heartbeat") == nil)
        #expect(id("/api/v1/devices/a/b/heartbeat") == nil)
        #expect(id("/api/v1/devices/%30b6e/heartbeat") == nil)
        #expect(id("/api/v1/devices/\(uuid)/heartbeats") == nil)
        #expect(id("/api/v2/devices/\(uuid)/heartbeat") == nil)
        #expect(id("/api/v1/devices/\(uuid)/heartbeat", [.connection: "close"]) == nil)
        #expect(id("/api/v1/devices/\(uuid)/heartbeat", [.expect: "100-continue"]) == nil)
    }

    @Test func bearerSchemeIsCaseInsensitive() {
        #expect(HeartbeatController<BasicRequestContext>.bearerToken("bearer abc") == "abc")
        #expect(HeartbeatController<BasicRequestContext>.bearerToken("Bearer  abc ") == "abc")
        #expect(HeartbeatController<BasicRequestContext>.bearerToken("Basic abc") == nil)
        #expect(HeartbeatController<BasicRequestContext>.bearerToken("Bearer ") == nil)
        #expect(HeartbeatController<BasicRequestContext>.bearerToken(nil) == nil)
    }

    @Test func decodesEveryScriptReply() throws {
        let recorded = try RedisHeartbeatStore.outcome(
            of: .array([.integer(0), .string("1770028200"), .string("123456"), .string("pl"), .string("{}")]))
        #expect(recorded == .recorded(serverTime: .init(millisecondsSinceEpoch: 1_770_028_200_123), assignedPlaylist: "pl", commands: ["{}"]))
        #expect(
            try RedisHeartbeatStore.outcome(of: .array([.integer(0), .string("1"), .string("0"), .string("")]))
                == .recorded(serverTime: .init(millisecondsSinceEpoch: 1000), assignedPlaylist: nil, commands: []))
        #expect(try RedisHeartbeatStore.outcome(of: .array([.integer(1)])) == .unknownDevice)
        #expect(try RedisHeartbeatStore.outcome(of: .array([.integer(2)])) == .wrongToken)
        #expect(
            try RedisHeartbeatStore.outcome(of: .array([.integer(3), .string("1"), .string("0"), .string("250")]))
                == .tooFrequent(retryAfter: .milliseconds(250)))
        #expect(throws: RedisError.self) { try RedisHeartbeatStore.outcome(of: .string("OK")) }
        #expect(throws: RedisError.self) { try RedisHeartbeatStore.outcome(of: .array([.integer(9)])) }
    }
}

enum TestMetrics {
    /// swift-metrics can be bootstrapped once per process.
    static let registry = MetricsBootstrap.registry
}
