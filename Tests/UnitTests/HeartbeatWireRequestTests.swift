import NIOCore
import Testing

@testable import Ingest

/// Which bytes ``HeartbeatWireRequest`` takes as a heartbeat, and which it leaves to the HTTP/1
/// pipeline (``HeartbeatWireHandler`` then hands the connection over).
@Suite struct HeartbeatWireRequestTests {
    static let id = "0b6e2a58-4a63-4d4e-9d8f-7c1f3c2b1a00"
    static let body = #"{"device_id":"0b6e2a58-4a63-4d4e-9d8f-7c1f3c2b1a00"}"#

    static func request(
        target: String = "/api/v1/devices/\(id)/heartbeat", method: String = "POST", version: String = "HTTP/1.1",
        headers: [String] = ["Host: gateway", "Authorization: Bearer t0ken", "Content-Type: application/json"], body: String = body,
        contentLength: Bool = true, lineEnd: String = "\r\n"
    ) -> String {
        let lines = ["\(method) \(target) \(version)"] + headers + (contentLength ? ["Content-Length: \(body.utf8.count)"] : [])
        return lines.map { $0 + lineEnd }.joined() + lineEnd + body
    }

    enum Result: Equatable {
        case request(id: String, contentLength: String?, authorization: String?, body: String, length: Int)
        case incomplete, notHandled
    }

    static func scan(_ text: String, maxBodyBytes: Int = 16 * 1024) -> Result {
        switch HeartbeatWireRequest.scan(ByteBuffer(string: text), maxBodyBytes: maxBodyBytes) {
        case .request(let r, let length):
            .request(
                id: String(r.rawID), contentLength: r.contentLength, authorization: r.authorization, body: String(buffer: r.body), length: length)
        case .incomplete: .incomplete
        case .notHandled: .notHandled
        }
    }

    @Test func takesAPlayersHeartbeat() {
        let text = Self.request()
        #expect(
            Self.scan(text)
                == .request(
                    id: Self.id, contentLength: "\(Self.body.utf8.count)", authorization: "Bearer t0ken", body: Self.body,
                    length: text.utf8.count))
    }

    @Test func takesOneRequestOfPipelinedOnes() {
        let one = Self.request()
        guard case .request(_, _, _, let body, let length) = Self.scan(one + Self.request() + "GET /healthz HTTP/1.1\r\n\r\n") else {
            Issue.record("not taken")
            return
        }
        #expect(length == one.utf8.count)
        #expect(body == Self.body)
    }

    @Test func waitsForTheRestOfARequestItCanTake() {
        let text = Self.request()
        for cut in [1, 10, 30, 80, text.utf8.count - Self.body.utf8.count - 2, text.utf8.count - 1] {
            #expect(Self.scan(String(decoding: text.utf8.prefix(cut), as: UTF8.self)) == .incomplete, "cut at \(cut)")
        }
        #expect(Self.scan("") == .incomplete)
    }

    @Test func leavesEverythingElseToTheHTTP1Pipeline() {
        let cases: [(String, String)] = [
            ("another route", "GET /healthz HTTP/1.1\r\nHost: g\r\n\r\n"),
            ("another route, first bytes", "GET /he"),
            ("GET of the path", Self.request(method: "GET")),
            ("HTTP/1.0", Self.request(version: "HTTP/1.0")),
            ("percent-encoded id", Self.request(target: "/api/v1/devices/%30b6e/heartbeat")),
            ("empty id", Self.request(target: "/api/v1/devices//heartbeat")),
            ("trailing slash", Self.request(target: "/api/v1/devices/\(Self.id)/heartbeat/")),
            ("other suffix", Self.request(target: "/api/v1/devices/\(Self.id)/heartbeats")),
            ("nested", Self.request(target: "/api/v1/devices/a/b/heartbeat")),
            ("bare LF", Self.request(lineEnd: "\n")),
            ("chunked", Self.request(headers: ["Transfer-Encoding: chunked"], contentLength: false)),
            ("expect", Self.request(headers: ["Expect: 100-continue"])),
            ("connection close", Self.request(headers: ["Connection: close"])),
            ("two lengths", Self.request(headers: ["Content-Length: 3"])),
            ("length not decimal", Self.request(headers: ["Content-Length: +3"], body: "", contentLength: false)),
            ("two authorizations", Self.request(headers: ["Authorization: Bearer a", "Authorization: Bearer b"])),
            ("space before colon", Self.request(headers: ["Authorization : Bearer a"])),
            ("no colon", Self.request(headers: ["Authorization Bearer a"])),
            ("folded value", Self.request(headers: ["Authorization: Bearer", " a"])),
            ("control byte", Self.request(headers: ["X-Note: a\u{1}b"])),
            ("non-ASCII value", Self.request(headers: ["X-Note: é"])),
            ("body over the limit", Self.request(body: String(repeating: " ", count: 100))),
        ]
        for (name, text) in cases {
            #expect(Self.scan(text, maxBodyBytes: 64) == .notHandled, "\(name)")
        }
        // a head that never ends within the limit
        let endless = Self.request(headers: ["X-Pad: " + String(repeating: "a", count: HeartbeatWireRequest.maxHeadBytes)])
        #expect(Self.scan(String(decoding: endless.utf8.prefix(HeartbeatWireRequest.maxHeadBytes + 100), as: UTF8.self)) == .notHandled)
    }

    @Test func readsWhatTheRouteReadsAsTheHTTP1PipelineDoes() {
        // a query (ignored by the router), header names in any case, optional whitespace, keep-alive
        let text = Self.request(
            target: "/api/v1/devices/not-a-uuid/heartbeat?x=1",
            headers: ["AUTHORIZATION: \t Bearer abc  ", "connection: Keep-Alive", "X-Other: anything goes"])
        guard case .request(let id, let length, let authorization, _, _) = Self.scan(text) else {
            Issue.record("not taken")
            return
        }
        #expect(id == "not-a-uuid")  // answered 400 by the controller, as the route would
        #expect(length == "\(Self.body.utf8.count)")
        #expect(authorization == "Bearer abc")
        // no Content-Length: an empty body (the controller then answers the route's 400)
        let bare = Self.request(body: "", contentLength: false)
        #expect(Self.scan(bare) == .request(id: Self.id, contentLength: nil, authorization: "Bearer t0ken", body: "", length: bare.utf8.count))
    }
}
