import Foundation
import Logging
import RedisAdapter

/// A private `redis-server` on a loopback port, started and stopped by the test that owns it, so
/// tests can stop and restart Redis under a running gateway.
final class RedisServer: @unchecked Sendable {
    // @unchecked: `process` is only touched by the owning test's task, one call at a time.
    let port: Int
    let directory: URL
    private var process: ChildProcess?
    private let extraArguments: [String]

    var url: String { "redis://127.0.0.1:\(port)" }
    var endpoint: RedisEndpoint { RedisEndpoint(host: "127.0.0.1", port: port) }

    /// Starts a new server on a free port.
    /// - Parameter extraArguments: more `redis-server` options (e.g. `--cluster-enabled yes`).
    static func start(appendOnly: Bool = false, extraArguments: [String] = []) async throws -> RedisServer {
        signal(SIGPIPE, SIG_IGN)  // as the executables do: hiredis writes with plain write(2)
        var lastError: (any Error)?
        for _ in 0..<20 {
            // below 45,000: a cluster node also listens on its port + 10,000
            let server = RedisServer(port: Int.random(in: 20_000..<45_000), extraArguments: extraArguments)
            do {
                try await server.start(appendOnly: appendOnly)
                return server
            } catch {
                lastError = error
            }
        }
        throw lastError ?? TestFailure("could not start redis-server")
    }

    private init(port: Int, extraArguments: [String]) {
        self.port = port
        self.extraArguments = extraArguments
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("hb-redis-\(port)-\(UUID().uuidString.prefix(8))")
    }

    /// (Re)starts the server on its port.
    func start(appendOnly: Bool = false) async throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let binary = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"].first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let binary else { throw TestFailure("redis-server not found: install the Debian package redis-server (make deps)") }
        let process = try ChildProcess.spawn(
            binary,
            [
                "--port", String(port), "--bind", "127.0.0.1", "--dir", directory.path, "--save", "",
                "--appendonly", appendOnly ? "yes" : "no", "--daemonize", "no", "--loglevel", "warning",
                "--enable-debug-command", "local",
            ] + extraArguments)
        self.process = process
        let deadline = ContinuousClock.now + .seconds(5)
        while ContinuousClock.now < deadline {
            guard process.isRunning else { throw TestFailure("redis-server exited at start (port \(port) taken?)") }
            if await offPool({ [port] in Self.ping(port: port) }) { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        process.stop()
        throw TestFailure("redis-server did not answer on port \(port)")
    }

    /// Stops the server (SIGTERM) and waits for it to exit.
    func stop() async {
        guard let process else { return }
        self.process = nil
        await offPool { process.stop() }
    }

    deinit {
        process?.stop()
        try? FileManager.default.removeItem(at: directory)
    }

    /// Puts the server inside `DEBUG SLEEP` on a connection of its own and returns once it is
    /// busy (a raw `PING` goes unanswered); the returned task ends when the sleep does.
    func busy(forSeconds seconds: Int) async throws -> Task<Void, Never> {
        let sleeping = Task { [port] in
            _ = await offPool { RawSocket.exchange(port: port, send: Array("DEBUG SLEEP \(seconds)\r\n".utf8), timeout: .seconds(seconds + 2)) }
        }
        var sleepingNow = false
        for _ in 0..<30 where !sleepingNow {
            sleepingNow = await offPool { [port] in
                RawSocket.exchange(port: port, send: Array("PING\r\n".utf8), timeout: .milliseconds(100)) == nil
            }
        }
        guard sleepingNow else { throw TestFailure("the server never became busy") }
        return sleeping
    }

    /// A client for the test's own inspection of Redis.
    func client(timeout: Duration = .seconds(1)) -> RedisClient {
        RedisClient(configuration: .init(endpoint: endpoint, timeout: timeout, connections: 1), logger: Logger(label: "test-redis"))
    }

    private static func ping(port: Int) -> Bool {
        guard let reply = RawSocket.exchange(port: port, send: Array("PING\r\n".utf8), timeout: .milliseconds(200)) else { return false }
        let text = String(decoding: reply, as: UTF8.self)
        return text.hasPrefix("+PONG") || text.hasPrefix("-NOAUTH")  // up, with a password (`--requirepass`)
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
