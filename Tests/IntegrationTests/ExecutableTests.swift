import Foundation
import Shared
import Testing

/// The built executables as ops run them: configuration errors, readiness, SIGTERM.
@Suite(.serialized) struct ExecutableTests {
    /// The folder holding the test bundle also holds the executables.
    static func binary(_ name: String) throws -> String {
        let folder = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for candidate in [folder, folder.deletingLastPathComponent()] {
            let path = candidate.appendingPathComponent(name).path
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        throw TestFailure("\(name) not built next to \(folder.path): run `swift build` first")
    }

    static func environment(_ extra: [String: String]) -> [String: String] {
        var environment = ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin", "LOG_LEVEL": "warning"]
        environment.merge(extra) { $1 }
        return environment
    }

    static func httpGet(port: Int, path: String) async -> String? {
        await offPool { RawSocket.exchange(port: port, send: Array("GET \(path) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".utf8), timeout: .milliseconds(500)) }
            .map { String(decoding: $0, as: UTF8.self) }
    }

    static func waitUntilReady(port: Int) async throws {
        for _ in 0..<100 {
            if let reply = await httpGet(port: port, path: "/readyz"), reply.hasPrefix("HTTP/1.1 200") { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestFailure("not ready on port \(port)")
    }

    @Test func aBadSettingStopsTheGatewayWithAMessage() async throws {
        let child = try ChildProcess.spawn(try Self.binary("heartbeat-ingest"), [], environment: Self.environment(["HTTP_PORT": "eighty"]))
        let code = await offPool { child.terminate(signal: 0, timeout: .seconds(5)) }
        #expect(code == 2)
    }

    @Test func theGatewayStopsCleanlyOnSIGTERM() async throws {
        let redis = try await RedisServer.start()
        let port = Int.random(in: 46_000..<50_000)
        let child = try ChildProcess.spawn(try Self.binary("heartbeat-ingest"), [],
                                           environment: Self.environment(["HTTP_HOST": "127.0.0.1", "HTTP_PORT": "\(port)", "REDIS_URL": redis.url]))
        try await Self.waitUntilReady(port: port)
        #expect(await Self.httpGet(port: port, path: "/healthz")?.contains(#"{"status":"ok"}"#) == true)
        let code = await offPool { child.terminate() }
        #expect(code == 0)
        await redis.stop()
    }

    @Test func theMonitorRefusesToStartWithoutAnAdminToken() async throws {
        let child = try ChildProcess.spawn(try Self.binary("heartbeat-monitor"), [], environment: Self.environment([:]))
        let code = await offPool { child.terminate(signal: 0, timeout: .seconds(5)) }
        #expect(code == 2)
    }

    @Test func theMonitorReleasesItsLockOnSIGTERM() async throws {
        let h = try await MonitorHarness.start()
        let port = Int.random(in: 50_000..<54_000)
        let config = [
            "REDIS_URL": h.server.url, "POSTGRES_URL": h.database.url, "KAFKA_BROKERS": h.kafkaBrokers, "BUCKETS": "4",
            "ADMIN_PORT": "\(port)", "ADMIN_TOKEN": MonitorHarness.adminToken, "MONITOR_INSTANCE_ID": "sigterm",
            "OFFLINE_AFTER_SECONDS": "2", "SCAN_INTERVAL_SECONDS": "0.5",
        ]
        let child = try ChildProcess.spawn(try Self.binary("heartbeat-monitor"), [], environment: Self.environment(config))
        try await Self.waitUntilReady(port: port)
        let leaderQuery = """
            SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 7220001 AND granted
            AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
            """
        var leading = false
        for _ in 0..<30 where !leading {
            leading = try await h.database.connection.query(leaderQuery).scalar == "1"
            if !leading { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(leading)
        #expect(await Self.httpGet(port: port, path: "/readyz")?.contains(#""leader":true"#) == true)
        let code = await offPool { child.terminate() }
        #expect(code == 0)
        #expect(try await h.database.connection.query(leaderQuery).scalar == "0")
        await h.shutdown()
    }
}
