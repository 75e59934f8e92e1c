import HeartbeatDomain
import Logging
import NIOPosix
import RedisAdapter
import Testing

/// The hiredis client against a real Redis: pipelining, typed failures, reconnects, scripts; the
/// failures both through its threaded connections and through an event loop's own.
@Suite struct RedisClientTests {
    @Test func carriesManyConcurrentCommandsOverFewConnections() async throws {
        let server = try await RedisServer.start()
        let client = RedisClient(configuration: .init(endpoint: server.endpoint, connections: 2), logger: Logger(label: "t"))
        let replies = try await withThrowingTaskGroup(of: Int64.self) { group in
            for _ in 0..<2000 { group.addTask { try await client.execute(["INCR", "counter"]).integer ?? -1 } }
            return try await group.reduce(into: [Int64]()) { $0.append($1) }
        }
        #expect(Set(replies) == Set(1...2000))
        let clients = try await client.execute(["CLIENT", "LIST"]).string ?? ""
        #expect(clients.split(separator: "\n").count <= 3)  // two pool connections (+ none other)
        await client.shutdown()
    }

    @Test func errorRepliesAreValuesAndValuesAreTyped() async throws {
        let server = try await RedisServer.start()
        let client = server.client()
        let reply = try await client.send(["NOSUCHCOMMAND"])
        guard case .error(let message) = reply else {
            Issue.record("expected an error reply, got \(reply)")
            return
        }
        #expect(message.hasPrefix("ERR unknown command"))
        await #expect(throws: RedisError.self) { try await client.execute(["NOSUCHCOMMAND"]) }
        try await client.execute(["RPUSH", "l", "a", "b"])
        #expect(try await client.execute(["LRANGE", "l", "0", "-1"]) == .array([.string("a"), .string("b")]))
        #expect(try await client.execute(["GET", "missing"]) == .null)
        await client.shutdown()
    }

    /// Through the client's threaded connections, and through an event loop's own connection (the
    /// gateway's heartbeats: ``RedisClient/send(_:on:completion:)``).
    static func send(_ client: RedisClient, _ arguments: [String], onLoop: Bool) async throws -> RedisValue {
        onLoop ? try await client.send(arguments, on: MultiThreadedEventLoopGroup.singleton.next()) : try await client.execute(arguments)
    }

    @Test(arguments: [false, true]) func aServerThatDoesNotAnswerSurfacesAsATimeout(onLoop: Bool) async throws {
        // A listener that completes the TCP handshake (kernel backlog) but never replies.
        let silent = try SilentListener()
        let client = RedisClient(
            configuration: .init(endpoint: RedisEndpoint(host: "127.0.0.1", port: silent.port), timeout: .milliseconds(300), connections: 1),
            logger: Logger(label: "t"))
        let started = ContinuousClock.now
        await #expect(throws: RedisError.timeout) { try await Self.send(client, ["PING"], onLoop: onLoop) }
        let elapsed = ContinuousClock.now - started
        #expect(elapsed >= .milliseconds(250) && elapsed < .seconds(2), "\(elapsed)")
        await client.shutdown()
    }

    @Test(arguments: [false, true]) func aBusyServerSurfacesAsATimeoutAndTheClientRecovers(onLoop: Bool) async throws {
        let server = try await RedisServer.start()
        let client = server.client(timeout: .milliseconds(300))
        #expect(try await Self.send(client, ["PING"], onLoop: onLoop) == .string("PONG"))
        let sleeping = try await server.busy(forSeconds: 2)
        await #expect(throws: RedisError.timeout) { try await Self.send(client, ["PING"], onLoop: onLoop) }
        await sleeping.value
        try await Task.sleep(for: .milliseconds(150))  // past the reconnect backoff
        // the late PONG went with the dropped connection: a new one answers the next command
        #expect(try await Self.send(client, ["ECHO", "after"], onLoop: onLoop) == .string("after"))
        await client.shutdown()
    }

    @Test(arguments: [false, true]) func failsFastWhileRedisIsDownAndReconnectsWhenItIsBack(onLoop: Bool) async throws {
        let server = try await RedisServer.start()
        let client = server.client()
        _ = try await Self.send(client, ["SET", "k", "v"], onLoop: onLoop)
        await server.stop()
        let started = ContinuousClock.now
        for _ in 0..<20 {
            await #expect(throws: RedisError.self) { try await Self.send(client, ["GET", "k"], onLoop: onLoop) }
        }
        #expect(ContinuousClock.now - started < .seconds(1))
        try await server.start()
        try await Task.sleep(for: .milliseconds(150))  // past the reconnect backoff
        #expect(try await Self.send(client, ["PING"], onLoop: onLoop) == .string("PONG"))
        await client.shutdown()
    }

    @Test func scriptsSurviveARestartThatEmptiesTheScriptCache() async throws {
        let server = try await RedisServer.start()
        let client = server.client()
        let script = RedisScript(name: "echo", source: "return ARGV[1]")
        try await client.load([script])
        #expect(try await client.run(script, keys: [], arguments: ["one"]) == .string("one"))
        try await client.execute(["SCRIPT", "FLUSH"])
        #expect(try await client.run(script, keys: [], arguments: ["two"]) == .string("two"))
        #expect(try await client.execute(["SCRIPT", "EXISTS", script.sha1]) == .array([.integer(1)]))
        await #expect(throws: RedisError.self) {
            try await client.run(RedisScript(name: "bad", source: "return redis.call('NOPE')"), keys: [], arguments: [])
        }
        await client.shutdown()
    }

    @Test func commandsAfterShutdownFail() async throws {
        let server = try await RedisServer.start()
        let client = server.client()
        await client.shutdown()
        await #expect(throws: RedisError.shutdown) { try await client.execute(["PING"]) }
    }
}
