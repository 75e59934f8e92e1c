import HeartbeatDomain
import Logging
import NIOCore

extension RedisClient {
    /// Runs `script` with one round trip in the common case (two after Redis lost its script cache).
    /// - Throws: ``RedisError/server(_:)`` when the script fails.
    public func run(_ script: RedisScript, keys: [String], arguments: [String]) async throws -> RedisValue {
        try await run(RedisScriptCall(script, keys: keys, arguments: arguments))
    }

    /// ``run(_:keys:arguments:)`` of a call written straight to RESP (see ``RedisScriptCall``).
    public func run(_ call: RedisScriptCall) async throws -> RedisValue {
        precondition(call.isComplete, "\(call.script.name): keys or arguments missing or extra")
        var reply = try await send(encoded: call.evalsha, key: call.routingKey)
        if lostScript(call, reply: reply) { reply = try await send(encoded: call.eval, key: call.routingKey) }
        return try Self.failingOnErrorReply(.success(reply)).get()
    }

    /// ``run(_:keys:arguments:)`` from an event loop, with the reply handed to `completion` on that
    /// loop (see ``send(_:on:completion:)``); an error reply arrives as ``RedisError/server(_:)``.
    public func run(
        _ script: RedisScript, keys: [String], arguments: [String], on eventLoop: any EventLoop,
        completion: @escaping @Sendable (Result<RedisValue, any Error>) -> Void
    ) {
        run(RedisScriptCall(script, keys: keys, arguments: arguments), on: eventLoop, completion: completion)
    }

    /// A call written straight to RESP (see ``RedisScriptCall``), from an event loop, with the reply
    /// handed to `completion` on that loop; an error reply arrives as ``RedisError/server(_:)``.
    public func run(
        _ call: RedisScriptCall, on eventLoop: any EventLoop, completion: @escaping @Sendable (Result<RedisValue, any Error>) -> Void
    ) {
        precondition(call.isComplete, "\(call.script.name): keys or arguments missing or extra")
        send(encoded: call.evalsha, key: call.routingKey, on: eventLoop) { [self] result in
            if case .success(let reply) = result, lostScript(call, reply: reply) {
                send(encoded: call.eval, key: call.routingKey, on: eventLoop) { completion(Self.failingOnErrorReply($0)) }
                return
            }
            completion(Self.failingOnErrorReply(result))
        }
    }

    /// Whether `reply` is `NOSCRIPT` (Redis lost its script cache: the call goes again as ``RedisScriptCall/eval``).
    private func lostScript(_ call: RedisScriptCall, reply: RedisValue) -> Bool {
        guard case .error(let message) = reply, message.hasPrefix("NOSCRIPT") else { return false }
        logger.info("Redis lost its script cache; reloading", metadata: ["script": "\(call.script.name)"])
        return true
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
