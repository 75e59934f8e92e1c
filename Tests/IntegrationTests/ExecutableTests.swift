import Foundation
import HeartbeatDomain
import ServerSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

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
        await offPool {
            RawSocket.exchange(
                port: port, send: Array("GET \(path) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".utf8), timeout: .milliseconds(500))
        }
        .map { String(decoding: $0, as: UTF8.self) }
    }

    static func waitUntilReady(port: Int) async throws {
        for _ in 0..<100 {
            if let reply = await httpGet(port: port, path: "/readyz"), reply.hasPrefix("HTTP/1.1 200") { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestFailure("not ready on port \(port)")
    }

    /// The shared libraries `ldd` says a binary needs (file names, e.g. `libpq.so.5`).
    static func sharedLibraries(_ binary: String) async throws -> Set<String> {
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("ldd-\(UUID().uuidString).txt").path
        defer { try? FileManager.default.removeItem(atPath: output) }
        let child = try ChildProcess.spawn("/usr/bin/ldd", [binary], environment: nil, output: output)
        #expect(await offPool { child.terminate(signal: 0, timeout: .seconds(10)) } == 0)
        let text = try String(contentsOfFile: output, encoding: .utf8)
        return Set(text.split(whereSeparator: \.isNewline).compactMap { $0.split(whereSeparator: \.isWhitespace).first.map(String.init) })
    }

    @Test func theGatewayLinksHiredisAndNeitherLibpqNorLibrdkafka() async throws {
        let gateway = try await Self.sharedLibraries(try Self.binary("heartbeat-ingest"))
        #expect(gateway.contains { $0.hasPrefix("libhiredis") }, "\(gateway)")
        #expect(!gateway.contains { $0.hasPrefix("libpq") || $0.hasPrefix("librdkafka") }, "\(gateway)")
        let monitor = try await Self.sharedLibraries(try Self.binary("heartbeat-monitor"))
        #expect(monitor.contains { $0.hasPrefix("libpq") } && monitor.contains { $0.hasPrefix("librdkafka") }, "\(monitor)")
    }

    @Test func aBadSettingStopsTheGatewayWithAMessage() async throws {
        let child = try ChildProcess.spawn(try Self.binary("heartbeat-ingest"), [], environment: Self.environment(["HTTP_PORT": "eighty"]))
        let code = await offPool { child.terminate(signal: 0, timeout: .seconds(5)) }
        #expect(code == 2)
    }

    /// At SIGTERM, a player's idle keep-alive connection (answered below the HTTP/1 pipeline, by
    /// ``HeartbeatWireHandler``) is closed; one whose request is half sent gets its answer first, then
    /// is closed; and the gateway stops.
    @Test func theGatewayStopsCleanlyOnSIGTERM() async throws {
        let redis = try await RedisServer.start()
        let port = freePort()
        let child = try ChildProcess.spawn(
            try Self.binary("heartbeat-ingest"), [],
            environment: Self.environment(["HTTP_HOST": "127.0.0.1", "HTTP_PORT": "\(port)", "REDIS_URL": redis.url]))
        try await Self.waitUntilReady(port: port)
        #expect(await Self.httpGet(port: port, path: "/healthz")?.contains(#"{"status":"ok"}"#) == true)
        let id = DeviceID.random()
        let request = EventLoopHeartbeatTests.request(id.string, token: "t0ken", body: EventLoopHeartbeatTests.body(id))
        let half = request.utf8.count / 2
        let outcome = await offPool { () -> (first: String?, idleClosed: Bool, second: String?, secondClosed: Bool, code: Int32?)? in
            guard let idle = RawHTTPConnection(port: port), let sending = RawHTTPConnection(port: port) else { return nil }
            idle.send(request)
            let first = idle.responses(1).first
            sending.send(String(decoding: request.utf8.prefix(half), as: UTF8.self))
            Thread.sleep(forTimeInterval: 0.2)  // the first half is read before the signal
            kill(child.pid, SIGTERM)
            let idleClosed = idle.isClosedByPeer(within: .seconds(2))
            sending.send(String(decoding: request.utf8.dropFirst(half), as: UTF8.self))
            let second = sending.responses(1).first
            let secondClosed = sending.isClosedByPeer(within: .seconds(2))
            return (first, idleClosed, second, secondClosed, child.terminate(signal: 0, timeout: .seconds(5)))
        }
        #expect(outcome?.first?.hasPrefix("HTTP/1.1 ") == true, "\(outcome?.first ?? "no answer")")
        #expect(outcome?.idleClosed == true)
        #expect(outcome?.second?.hasPrefix("HTTP/1.1 ") == true, "\(outcome?.second ?? "no answer")")
        #expect(outcome?.secondClosed == true)
        #expect(outcome?.code == 0)
        await redis.stop()
    }

    @Test func aGatewayWithAnotherBucketCountThanTheDeploymentRefusesToStart() async throws {
        let redis = try await RedisServer.start()
        let client = redis.client()
        try await client.execute(["SET", KeySchema.bucketCountKey, "8"])
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("ingest-\(UUID().uuidString).log").path
        let child = try ChildProcess.spawn(
            try Self.binary("heartbeat-ingest"), [],
            environment: Self.environment([
                "HTTP_HOST": "127.0.0.1", "HTTP_PORT": "0", "REDIS_URL": redis.url, "BUCKETS": "4",
            ]), output: log)
        let code = await offPool { child.terminate(signal: 0, timeout: .seconds(10)) }
        #expect(code == 2)
        let message = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(message.contains("BUCKETS=4") && message.contains("set BUCKETS=8"), "\(message)")
        try? FileManager.default.removeItem(atPath: log)
        await client.shutdown()
        await redis.stop()
    }

    @Test func openConnectionsAreCappedAndFreedByTheIdleTimeout() async throws {
        let redis = try await RedisServer.start()
        let port = freePort()
        let child = try ChildProcess.spawn(
            try Self.binary("heartbeat-ingest"), [],
            environment: Self.environment([
                "HTTP_HOST": "127.0.0.1", "HTTP_PORT": "\(port)", "REDIS_URL": redis.url,
                "HTTP_IDLE_TIMEOUT_SECONDS": "1.5", "HTTP_MAX_CONNECTIONS": "3",
            ]))
        try await Self.waitUntilReady(port: port)
        try await Task.sleep(for: .milliseconds(100))  // the probe's connection is closed
        // three clients hold connections with half-sent request heads: the cap is reached
        let held = (0..<3).compactMap { _ in RawSocket.open(port: port) }
        #expect(held.count == 3)
        for fd in held { _ = Array("GET /healthz HTTP/1.1\r\n".utf8).withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } }
        try await Task.sleep(for: .milliseconds(300))
        #expect(await Self.httpGet(port: port, path: "/healthz") == nil, "a fourth connection was served over the cap")
        // the idle timeout closes the held ones, and a new client is served again
        try await Task.sleep(for: .seconds(1.5))
        #expect(await Self.httpGet(port: port, path: "/healthz")?.hasPrefix("HTTP/1.1 200") == true)
        for fd in held { close(fd) }
        let code = await offPool { child.terminate() }
        #expect(code == 0)
        await redis.stop()
    }

    @Test func versionAndJSONLogLinesWhenStdoutIsNotATerminal() async throws {
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("ingest-\(UUID().uuidString).log").path
        defer { try? FileManager.default.removeItem(atPath: output) }
        let version = try ChildProcess.spawn(try Self.binary("heartbeat-ingest"), ["--version"], environment: Self.environment([:]), output: output)
        #expect(await offPool { version.terminate(signal: 0, timeout: .seconds(5)) } == 0)
        #expect((try? String(contentsOfFile: output, encoding: .utf8)) == "heartbeat-ingest \(BuildInfo.version)\n")
        try FileManager.default.removeItem(atPath: output)
        // no LOG_FORMAT and stdout a file: one JSON object per line
        let child = try ChildProcess.spawn(
            try Self.binary("heartbeat-ingest"), [],
            environment: Self.environment([
                "HTTP_HOST": "127.0.0.1", "HTTP_PORT": "0", "REDIS_URL": "redis://127.0.0.1:1", "LOG_LEVEL": "info",
            ]), output: output)
        try await Task.sleep(for: .seconds(1.5))
        #expect(await offPool { child.terminate() } == 0)
        let lines = ((try? String(contentsOfFile: output, encoding: .utf8)) ?? "").split(separator: "\n")
        #expect(!lines.isEmpty)
        for line in lines {
            let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(object?["level"] is String && object?["logger"] as? String == "heartbeat-ingest" && object?["message"] is String, "\(line)")
            #expect((object?["timestamp"] as? String).flatMap { UTCTimestamp(iso8601: $0) } != nil, "\(line)")
        }
    }

    @Test func metricsPortMovesMetricsOffTheDevicePort() async throws {
        let redis = try await RedisServer.start()
        let port = freePort()
        let metricsPort = freePort()
        let child = try ChildProcess.spawn(
            try Self.binary("heartbeat-ingest"), [],
            environment: Self.environment([
                "HTTP_HOST": "127.0.0.1", "HTTP_PORT": "\(port)", "REDIS_URL": redis.url, "METRICS_PORT": "\(metricsPort)",
            ]))
        try await Self.waitUntilReady(port: port)
        var scraped: String?
        for _ in 0..<50 where scraped == nil {
            scraped = await Self.httpGet(port: metricsPort, path: "/metrics")
            if scraped == nil { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(scraped?.hasPrefix("HTTP/1.1 200") == true)
        #expect(scraped?.contains(#"heartbeat_build_info{program="heartbeat-ingest",version="\#(BuildInfo.version)"} 1"#) == true, "\(scraped ?? "")")
        for name in ["process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds", "process_start_time_seconds"] {
            #expect(scraped?.contains("\n\(name) ") == true, "\(name)")
        }
        #expect(scraped.map { metricFamiliesWithoutHelp($0) } == [], "\(scraped ?? "")")
        let rss = scraped.flatMap { metricValue("process_resident_memory_bytes", in: $0) }
        #expect(rss.map { $0 > 1_000_000 } == true, "resident memory \(rss ?? -1)")
        #expect(await Self.httpGet(port: port, path: "/metrics")?.hasPrefix("HTTP/1.1 404") == true)
        #expect(await offPool { child.terminate() } == 0)
        await redis.stop()
    }

    @Test func theMonitorRefusesToStartWithoutAnAdminToken() async throws {
        let child = try ChildProcess.spawn(try Self.binary("heartbeat-monitor"), [], environment: Self.environment([:]))
        let code = await offPool { child.terminate(signal: 0, timeout: .seconds(5)) }
        #expect(code == 2)
    }

    @Test func theMonitorReleasesItsLockOnSIGTERM() async throws {
        let h = try await MonitorHarness.start()
        let port = freePort()  // a random port in the ephemeral range was once taken: the monitor could not bind
        let config = [
            "REDIS_URL": h.server.url, "POSTGRES_URL": h.database.url, "KAFKA_BROKERS": h.kafkaBrokers, "BUCKETS": "4",
            "ADMIN_PORT": "\(port)", "ADMIN_TOKEN": MonitorHarness.adminToken, "MONITOR_INSTANCE_ID": "sigterm",
            "OFFLINE_AFTER_SECONDS": "2", "SCAN_INTERVAL_SECONDS": "0.5",
        ]
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("monitor-sigterm-\(UUID().uuidString).log").path
        defer { try? FileManager.default.removeItem(atPath: log) }
        let child = try ChildProcess.spawn(try Self.binary("heartbeat-monitor"), [], environment: Self.environment(config), output: log)
        do {
            try await Self.waitUntilReady(port: port)
        } catch {
            let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            throw TestFailure("\(error); the monitor is \(child.isRunning ? "running" : "gone"); its log: \(output.suffix(2000))")
        }
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
