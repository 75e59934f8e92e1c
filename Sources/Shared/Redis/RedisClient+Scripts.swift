import HeartbeatDomain
import Logging
import NIOCore

extension RedisClient {
    /// Runs `script` with one round trip in the common case (two after Redis lost its script cache).
    /// - Throws: ``RedisError/server(_:)`` when the script fails.
    public func run(_ script: RedisScript, keys: [String], arguments: [String]) async throws -> RedisValue {
        let command = Self.evalsha(script, keys: keys, arguments: arguments)
        var reply = try await send(command)
        if let withSource = reloading(script, command, after: reply) { reply = try await send(withSource) }
        return try Self.failingOnErrorReply(.success(reply)).get()
    }

    /// ``run(_:keys:arguments:)`` with the reply handed to `completion` on the connection's thread
    /// (see ``send(_:completion:)``); an error reply arrives as ``RedisError/server(_:)``.
    public func run(
        _ script: RedisScript, keys: [String], arguments: [String],
        completion: @escaping @Sendable (Result<RedisValue, any Error>) -> Void
    ) {
        run(script, keys: keys, arguments: arguments, via: { [self] in send($0, completion: $1) }, completion: completion)
    }

    /// ``run(_:keys:arguments:)`` from an event loop, with the reply handed to `completion` on that
    /// loop (see ``send(_:on:completion:)``); an error reply arrives as ``RedisError/server(_:)``.
    public func run(
        _ script: RedisScript, keys: [String], arguments: [String], on eventLoop: any EventLoop,
        completion: @escaping @Sendable (Result<RedisValue, any Error>) -> Void
    ) {
        run(script, keys: keys, arguments: arguments, via: { [self] in send($0, on: eventLoop, completion: $1) }, completion: completion)
    }

    private func run(
        _ script: RedisScript, keys: [String], arguments: [String],
        via send: @escaping @Sendable ([String], @escaping @Sendable (Result<RedisValue, any Error>) -> Void) -> Void,
        completion: @escaping @Sendable (Result<RedisValue, any Error>) -> Void
    ) {
        let command = Self.evalsha(script, keys: keys, arguments: arguments)
        send(command) { [self] result in
            if case .success(let reply) = result, let withSource = reloading(script, command, after: reply) {
                send(withSource) { completion(Self.failingOnErrorReply($0)) }
                return
            }
            completion(Self.failingOnErrorReply(result))
        }
    }

    private static func evalsha(_ script: RedisScript, keys: [String], arguments: [String]) -> [String] {
        var command = ["EVALSHA", script.sha1, String(keys.count)]
        command.reserveCapacity(3 + keys.count + arguments.count)
        command += keys
        command += arguments
        return command
    }

    /// After a `NOSCRIPT` reply (Redis lost its script cache): the same call with the script's source.
    private func reloading(_ script: RedisScript, _ command: [String], after reply: RedisValue) -> [String]? {
        guard case .error(let message) = reply, message.hasPrefix("NOSCRIPT") else { return nil }
        logger.info("Redis lost its script cache; reloading", metadata: ["script": "\(script.name)"])
        var withSource = command
        withSource[0] = "EVAL"
        withSource[1] = script.source
        return withSource
    }

    private static func failingOnErrorReply(_ result: Result<RedisValue, any Error>) -> Result<RedisValue, any Error> {
        if case .success(.error(let message)) = result { return .failure(RedisError.server(message)) }
        return result
    }

    /// Loads scripts into Redis's cache (every primary's, in cluster mode) ahead of their first use.
    public func load(_ scripts: [RedisScript]) async throws {
        for script in scripts {
            for reply in try await sendToEachPrimary(["SCRIPT", "LOAD", script.source]) {
                if case .error(let message) = reply { throw RedisError.server(message) }
                guard reply.string == script.sha1 else {
                    throw RedisError.unexpectedReply("SCRIPT LOAD of \(script.name) returned \(reply)")
                }
            }
        }
    }
}
