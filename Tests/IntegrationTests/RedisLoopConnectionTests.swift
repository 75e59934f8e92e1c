import HeartbeatDomain
import Logging
import NIOCore
import NIOPosix
import RedisAdapter
import Testing

/// The event-loop connection the gateway's heartbeats use (``RedisClient/send(_:on:completion:)``)
/// against a real Redis: replies on the caller's loop, in order, and the same failures as the
/// threaded connections: timeouts, a server going away and coming back, a wrong password, shutdown.
@Suite struct RedisLoopConnectionTests {
    let loop = MultiThreadedEventLoopGroup.singleton.next()

    @Test func repliesComeBackOnTheCallersLoopInOrder() async throws {
        let server = try await RedisServer.start()
        let client = server.client()
        let replies = try await withThrowingTaskGroup(of: (Int, Int64).self) { group in
            for index in 0..<500 {
                group.addTask { (index, try await client.send(["INCR", "counter"], on: loop).integer ?? -1) }
            }
            return try await group.reduce(into: [(Int, Int64)]()) { $0.append($1) }
        }
        #expect(Set(replies.map(\.1)) == Set(1...500))
        // one connection for the loop besides the client's threaded one
        #expect(try await client.send(["CLIENT", "LIST"], on: loop).string?.split(separator: "\n").count == 1)
        let script = RedisScript(name: "echo", source: "return ARGV[1]")
        #expect(try await client.run(script, keys: [], arguments: ["cold cache"], on: loop) == .string("cold cache"))
        await client.shutdown()
    }

    @Test func aServerThatDoesNotAnswerSurfacesAsATimeout() async throws {
        let silent = try SilentListener()
        let client = RedisClient(
            configuration: .init(endpoint: RedisEndpoint(host: "127.0.0.1", port: silent.port), timeout: .milliseconds(300), connections: 1),
            logger: Logger(label: "t"))
        let started = ContinuousClock.now
        await #expect(throws: RedisError.timeout) { try await client.send(["PING"], on: loop) }
        let elapsed = ContinuousClock.now - started
        #expect(elapsed >= .milliseconds(250) && elapsed < .seconds(2), "\(elapsed)")
        await client.shutdown()
    }

    @Test func aBusyServerSurfacesAsATimeoutAndTheConnectionRecovers() async throws {
        let server = try await RedisServer.start()
        let client = server.client(timeout: .milliseconds(300))
        #expect(try await client.send(["PING"], on: loop) == .string("PONG"))
        let sleeping = try await server.busy(forSeconds: 2)
        await #expect(throws: RedisError.timeout) { try await client.send(["PING"], on: loop) }
        await sleeping.value
        // the late PONG went with the dropped connection: a new one answers the next command
        #expect(try await client.send(["ECHO", "after"], on: loop) == .string("after"))
        await client.shutdown()
    }

    @Test func failsFastWhileRedisIsDownAndReconnectsWhenItIsBack() async throws {
        let server = try await RedisServer.start()
        let client = server.client()
        try await client.send(["SET", "k", "v"], on: loop)
        await server.stop()
        let started = ContinuousClock.now
        for _ in 0..<20 {
            await #expect(throws: RedisError.self) { try await client.send(["GET", "k"], on: loop) }
        }
        #expect(ContinuousClock.now - started < .seconds(1))
        try await server.start()
        try await Task.sleep(for: .milliseconds(150))  // past the reconnect backoff
        #expect(try await client.send(["PING"], on: loop) == .string("PONG"))
        await client.shutdown()
    }

    @Test func aWrongPasswordFailsTheCommandsWithRedissAnswer() async throws {
        let server = try await RedisServer.start(extraArguments: ["--requirepass", "right"])
        var endpoint = server.endpoint
        endpoint.password = "wrong"
        let client = RedisClient(configuration: .init(endpoint: endpoint), logger: Logger(label: "t"))
        do {
            _ = try await client.send(["PING"], on: loop)
            Issue.record("a command went through with a wrong password")
        } catch let error as RedisError {
            if case .server(let message) = error {
                #expect(message.hasPrefix("WRONGPASS"), "\(message)")
            } else {
                Issue.record("expected Redis's refusal, got \(error)")
            }
        }
        await client.shutdown()
        endpoint.password = "right"
        let good = RedisClient(configuration: .init(endpoint: endpoint), logger: Logger(label: "t"))
        #expect(try await good.send(["PING"], on: loop) == .string("PONG"))
        await good.shutdown()
    }

    @Test func commandsAfterShutdownFail() async throws {
        let server = try await RedisServer.start()
        let client = server.client()
        #expect(try await client.send(["PING"], on: loop) == .string("PONG"))
        await client.shutdown()
        await #expect(throws: RedisError.shutdown) { try await client.send(["PING"], on: loop) }
    }
}

extension RedisClient {
    /// ``send(_:on:completion:)``, awaited; fails the test when the completion runs off the loop.
    @discardableResult
    func send(_ arguments: [String], on loop: any EventLoop) async throws -> RedisValue {
        try await withCheckedThrowingContinuation { continuation in
            send(arguments, on: loop) { result in
                #expect(loop.inEventLoop, "the completion ran off the caller's loop")
                continuation.resume(with: result)
            }
        }
    }

    /// ``run(_:keys:arguments:on:completion:)``, awaited.
    func run(_ script: RedisScript, keys: [String], arguments: [String], on loop: any EventLoop) async throws -> RedisValue {
        try await withCheckedThrowingContinuation { continuation in
            run(script, keys: keys, arguments: arguments, on: loop) { continuation.resume(with: $0) }
        }
    }
}
