import AsyncHTTPClient
import Foundation
import NIOCore

/// A private Alertmanager (Debian's `prometheus-alertmanager`) on a free loopback port, with a
/// route to nowhere: tests read what it holds through its v2 API. Restartable on the same port.
final class AlertmanagerServer: @unchecked Sendable {
    // @unchecked: `process` is only touched by the owning test's task, one call at a time.
    let port: Int
    let directory: URL
    private var process: ChildProcess?

    var url: String { "http://127.0.0.1:\(port)" }

    static let binary = "/usr/bin/prometheus-alertmanager"

    static func start() async throws -> AlertmanagerServer {
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw TestFailure("\(binary) not found: install the Debian package prometheus-alertmanager (make deps)")
        }
        let server = AlertmanagerServer(port: freePort())
        try await server.start()
        return server
    }

    private init(port: Int) {
        self.port = port
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("hb-alertmanager-\(port)-\(UUID().uuidString.prefix(8))")
    }

    func start() async throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let config = directory.appendingPathComponent("alertmanager.yml")
        try "route:\n  receiver: nowhere\nreceivers:\n  - name: nowhere\n".write(to: config, atomically: true, encoding: .utf8)
        process = try ChildProcess.spawn(
            Self.binary,
            [
                "--config.file=\(config.path)", "--storage.path=\(directory.path)", "--web.listen-address=127.0.0.1:\(port)",
                "--cluster.listen-address=", "--log.level=warn",
            ], output: directory.appendingPathComponent("alertmanager.log").path)
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            if (try? await get("/-/ready")) != nil { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestFailure("Alertmanager did not become ready on port \(port)")
    }

    /// Stops the server (its alerts live in memory: they are gone).
    func stop() async {
        let process = process
        self.process = nil
        _ = await offPool { process?.terminate() }
    }

    /// The alerts Alertmanager holds now (resolved ones are not listed), as JSON objects.
    func alerts(named name: String) async throws -> [[String: Any]] {
        let filter = "alertname=\"\(name)\"".addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
        let body = try await get("/api/v2/alerts?filter=\(filter)")
        return (try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [[String: Any]]) ?? []
    }

    private func get(_ path: String) async throws -> String {
        let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url + path), timeout: .seconds(2))
        guard response.status.code == 200 else { throw TestFailure("Alertmanager answered \(response.status.code) to \(path)") }
        return String(buffer: try await response.body.collect(upTo: 4 << 20))
    }
}
