import HeartbeatDomain
import Logging

extension RedisClient {
    /// Runs `script` with one round trip in the common case (two after Redis lost its script cache).
    /// - Throws: ``RedisError/server(_:)`` when the script fails.
    public func run(_ script: RedisScript, keys: [String], arguments: [String]) async throws -> RedisValue {
        var command = ["EVALSHA", script.sha1, String(keys.count)]
        command.reserveCapacity(3 + keys.count + arguments.count)
        command += keys
        command += arguments
        var reply = try await send(command)
        if case .error(let message) = reply, message.hasPrefix("NOSCRIPT") {
            logger.info("Redis lost its script cache; reloading", metadata: ["script": "\(script.name)"])
            command[0] = "EVAL"
            command[1] = script.source
            reply = try await send(command)
        }
        if case .error(let message) = reply { throw RedisError.server(message) }
        return reply
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
