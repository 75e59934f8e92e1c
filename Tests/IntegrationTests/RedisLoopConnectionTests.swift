import HeartbeatDomain
import Logging
import NIOCore
import NIOPosix
import RedisAdapter
import Testing

/// The event-loop connection the gateway's heartbeats use (``RedisClient/send(_:on:completion:)``)
/// against a real Redis: replies on the caller's loop, in order, a wrong password, shutdown. Its
/// timeouts and reconnects are `RedisClientTests`' cases, run both ways.
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
