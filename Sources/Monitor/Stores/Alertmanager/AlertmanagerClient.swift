import AsyncHTTPClient
import Foundation
import HeartbeatDomain
import Logging
import NIOCore
import ServiceLifecycle

/// ``AlertSink`` over Alertmanager's v2 API (`POST <base>/api/v2/alerts`), and the HTTP client's
/// lifetime as a service (shut down after the alerter stopped: list it before the alerter).
final class AlertmanagerClient: AlertSink, Service {
    let endpoint: String
    let timeout: Duration
    private let client = HTTPClient(eventLoopGroupProvider: .singleton)

    /// - Parameter baseURL: `ALERT_WEBHOOK_URL`, e.g. `http://alertmanager:9093`.
    init(baseURL: String, timeout: Duration = .seconds(5)) {
        self.endpoint = (baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL) + "/api/v2/alerts"
        self.timeout = timeout
    }

    struct Refused: Error, CustomStringConvertible {
        let status: UInt
        let body: String
        var description: String { "Alertmanager answered \(status): \(body)" }
    }

    func post(_ alerts: [Alert]) async throws {
        guard !alerts.isEmpty else { return }
        var request = HTTPClientRequest(url: endpoint)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(alerts)))
        let response = try await client.execute(request, timeout: .milliseconds(timeout.milliseconds))
        let body = try await response.body.collect(upTo: 64 * 1024)
        guard (200..<300).contains(response.status.code) else {
            throw Refused(status: response.status.code, body: String(buffer: body))
        }
    }

    func run() async throws {
        try? await gracefulShutdown()
        try await client.shutdown()
    }
}
