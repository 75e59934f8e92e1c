import Foundation
import HeartbeatDomain
import HummingbirdTesting
import Testing

@testable import Ingest

/// Heartbeats answered on the event loop (``HeartbeatWireHandler``, and ``HeartbeatChannelHandler``
/// once a connection is handed to the HTTP/1 pipeline) against the router's route, on a real Redis
/// and real sockets: the same bytes, responses in request order across the hand-over, and the
/// connection rules (idle timeout, half-close) kept.
@Suite struct EventLoopHeartbeatTests {
    static func request(_ id: String, token: String?, body: String, extra: String = "") -> String {
        let authorization = token.map { "Authorization: Bearer \($0)\r\n" } ?? ""
        return "POST /api/v1/devices/\(id)/heartbeat HTTP/1.1\r\nHost: gateway\r\n\(authorization)"
            + "Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\(extra)\r\n\(body)"
    }

    static func body(_ id: DeviceID, playlist: String = "pl-1") -> String {
        #"{"device_id":"\#(id)","timestamp":"2026-02-02T10:30:00Z","current_playlist":"\#(playlist)"}"#
    }

    /// A response with what legitimately differs between two answers blanked: the date, the server
    /// time, the jittered `Retry-After` of a `503`, and the device's id.
    static func normalized(_ response: String, id: DeviceID) -> String {
        response.replacingOccurrences(of: id.string, with: "<id>")
            .replacingOccurrences(of: #"date: [^\r]*"#, with: "date: <date>", options: [.regularExpression, .caseInsensitive])
            .replacingOccurrences(of: #""server_time":"[^"]*""#, with: #""server_time":"<t>""#, options: .regularExpression)
    }

    @Test func bothPathsAnswerTheSameBytes() async throws {
        let h = try await GatewayHarness.start()
        let fastDevice = DeviceID.random()
        let routerDevice = DeviceID.random()
        let fastToken = try await h.registry.register(device: fastDevice)
        let routerToken = try await h.registry.register(device: routerDevice)
        let unknown = DeviceID.random().string
        let settings = ["HEARTBEAT_MIN_INTERVAL_SECONDS": "30"]
        try await h.withGateway(settings) { fast in
            try await h.withGateway(settings, eventLoopHeartbeats: false) { router in
                let ports = (try #require(fast.port), try #require(router.port))
                // each case as (device, token) -> request; each path uses its own device
                let cases: [(String, @Sendable (DeviceID, String) -> String)] = [
                    ("ok", { id, token in Self.request(id.string, token: token, body: Self.body(id)) }),
                    ("429", { id, token in Self.request(id.string, token: token, body: Self.body(id)) }),
                    ("no token", { id, _ in Self.request(id.string, token: nil, body: Self.body(id)) }),
                    ("wrong token", { id, _ in Self.request(id.string, token: "nope", body: Self.body(id)) }),
                    (
                        "bad scheme",
                        { id, token in Self.request(id.string, token: nil, body: Self.body(id), extra: "Authorization: Basic \(token)\r\n") }
                    ),
                    ("bad id", { id, token in Self.request("not-a-uuid", token: token, body: Self.body(id)) }),
                    ("unknown", { id, token in Self.request(unknown, token: token, body: Self.body(id)) }),
                    ("mismatch", { id, token in Self.request(id.string, token: token, body: Self.body(DeviceID.random())) }),
                    ("not json", { id, token in Self.request(id.string, token: token, body: "{not json") }),
                    ("bad field", { id, token in Self.request(id.string, token: token, body: #"{"device_id":"\#(id)","timestamp":"x"}"#) }),
                    (
                        "announced too large",
                        { id, token in
                            "POST /api/v1/devices/\(id)/heartbeat HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer \(token)\r\nContent-Length: 20000\r\n\r\n{"
                        }
                    ),
                    (
                        "chunked too large",
                        { id, token in
                            let chunk = String(repeating: " ", count: 9000)
                            return "POST /api/v1/devices/\(id)/heartbeat HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer \(token)\r\n"
                                + "Transfer-Encoding: chunked\r\n\r\n2328\r\n\(chunk)\r\n2328\r\n\(chunk)\r\n0\r\n\r\n"
                        }
                    ),
                ]
                for (name, make) in cases {
                    let answers = await offPool { () -> [String] in
                        [(ports.0, fastDevice, fastToken), (ports.1, routerDevice, routerToken)].map { port, id, token in
                            guard let connection = RawHTTPConnection(port: port) else { return "no connection" }
                            connection.send(make(id, token))
                            return connection.responses(1).first.map { Self.normalized($0, id: id) } ?? "no response"
                        }
                    }
                    #expect(answers[0] == answers[1], "\(name)")
                    #expect(answers[0].hasPrefix("HTTP/1.1 "), "\(name): \(answers[0])")
                }
            }
        }
        await h.shutdown()
    }

    @Test func pipelinedRequestsAreAnsweredInTheirOrder() async throws {
        let h = try await GatewayHarness.start()
        let id = DeviceID.random()
        let token = try await h.registry.register(device: id)
        try await h.withGateway { client in
            let port = try #require(client.port)
            let statuses = await offPool { () -> [String] in
                guard let connection = RawHTTPConnection(port: port) else { return [] }
                // one write: heartbeats answered here interleaved with requests for the router
                connection.send(
                    Self.request(id.string, token: token, body: Self.body(id))
                        + "GET /healthz HTTP/1.1\r\nHost: g\r\n\r\n"
                        + Self.request(id.string, token: token, body: Self.body(id))
                        + "GET /nothing HTTP/1.1\r\nHost: g\r\n\r\n"
                        + Self.request(id.string, token: "wrong", body: Self.body(id))
                        + Self.request(id.string, token: token, body: Self.body(id)))
                return connection.responses(6).map { response in
                    let status = response.prefix(12).dropFirst(9)
                    return status + (response.contains("server_time") ? " heartbeat" : response.contains(#""status":"ok""#) ? " health" : "")
                }
            }
            #expect(statuses == ["200 heartbeat", "200 health", "200 heartbeat", "404", "401", "200 heartbeat"])
        }
        await h.shutdown()
    }

    @Test func heartbeatsKeepAConnectionAliveAndTheIdleTimeoutStillCloses() async throws {
        let h = try await GatewayHarness.start()
        let id = DeviceID.random()
        let token = try await h.registry.register(device: id)
        try await h.withGateway(["HTTP_IDLE_TIMEOUT_SECONDS": "1"]) { client in
            let port = try #require(client.port)
            let (answered, closed) = await offPool { () -> (Int, Bool) in
                guard let connection = RawHTTPConnection(port: port) else { return (0, false) }
                var answered = 0
                for _ in 0..<4 {  // 2.4 s on one connection, never 1 s idle
                    connection.send(Self.request(id.string, token: token, body: Self.body(id)))
                    answered += connection.responses(1).filter { $0.hasPrefix("HTTP/1.1 200") }.count
                    Thread.sleep(forTimeInterval: 0.6)
                }
                return (answered, connection.isClosedByPeer(within: .seconds(3)))
            }
            #expect(answered == 4)
            #expect(closed)
        }
        await h.shutdown()
    }

    @Test(arguments: [true, false]) func aClientThatHalfClosesAfterItsHeartbeatStillGetsTheAnswer(eventLoop: Bool) async throws {
        let h = try await GatewayHarness.start()
        let id = DeviceID.random()
        let token = try await h.registry.register(device: id)
        try await h.withGateway(eventLoopHeartbeats: eventLoop) { client in
            let port = try #require(client.port)
            let answers = await offPool { () -> [String] in
                guard let connection = RawHTTPConnection(port: port) else { return [] }
                connection.send(Self.request(id.string, token: token, body: Self.body(id)))
                connection.shutdownWrite()
                return connection.responses(1)
            }
            #expect(answers.first?.hasPrefix("HTTP/1.1 200") == true, "\(answers)")
        }
        await h.shutdown()
    }
}
