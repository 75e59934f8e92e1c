import HeartbeatDomain
import NIOCore
import RedisAdapter

/// Records heartbeats in Redis with one `EVALSHA` of ``HeartbeatScript`` each.
struct RedisHeartbeatStore: HeartbeatStore {
    let redis: RedisClient
    let keys: KeySchema
    let minimumInterval: Duration
    let historyStreamCap: Int

    func record(_ heartbeat: HeartbeatPayload, tokenHash: String) async throws -> HeartbeatOutcome {
        let (keys, arguments) = scriptCall(heartbeat, tokenHash: tokenHash)
        return try Self.outcome(of: try await redis.run(HeartbeatScript.script, keys: keys, arguments: arguments))
    }

    /// The same script call over the event loop's own Redis connection, its reply decoded on the loop.
    func record(
        _ heartbeat: HeartbeatPayload, tokenHash: String, on eventLoop: any EventLoop,
        completion: @escaping @Sendable (Result<HeartbeatOutcome, any Error>) -> Void
    ) {
        let (keys, arguments) = scriptCall(heartbeat, tokenHash: tokenHash)
        redis.run(HeartbeatScript.script, keys: keys, arguments: arguments, on: eventLoop) { reply in
            completion(reply.flatMap { reply in Result { try Self.outcome(of: reply) } })
        }
    }

    /// ``HeartbeatScript``'s keys and arguments for one heartbeat.
    private func scriptCall(_ heartbeat: HeartbeatPayload, tokenHash: String) -> (keys: [String], arguments: [String]) {
        let id = heartbeat.deviceID
        let bucket = keys.bucket(of: id)
        return (
            [
                keys.online(bucket: bucket), keys.device(id), keys.commands(id),
                keys.transitions(bucket: bucket), keys.history(bucket: bucket),
                keys.registryMarker(bucket: bucket), keys.commandLog(id),
            ],
            [
                id.string, tokenHash, heartbeat.storedForm,
                String(Int64(minimumInterval / .milliseconds(1))), String(historyStreamCap),
                heartbeat.ackedCommands.joined(separator: " "),
            ]
        )
    }

    func checkReachable() async throws {
        guard try await redis.execute(["PING"]).string == "PONG" else {
            throw RedisError.unexpectedReply("PING did not answer PONG")
        }
    }

    /// Decodes the script's reply (see ``HeartbeatScript``).
    static func outcome(of reply: RedisValue) throws -> HeartbeatOutcome {
        guard let items = reply.array, let code = items.first?.integer,
            let status = HeartbeatScript.Status(rawValue: code)
        else { throw RedisError.unexpectedReply("heartbeat script returned \(reply)") }
        switch status {
        case .unknownDevice: return .unknownDevice
        case .registryNotLoaded: return .registryNotLoaded
        case .wrongToken: return .wrongToken
        case .tooFrequent:
            guard items.count == 4, let waitMs = items[3].integer else {
                throw RedisError.unexpectedReply("heartbeat script returned \(reply)")
            }
            return .tooFrequent(retryAfter: .milliseconds(waitMs))
        case .recorded:
            guard items.count >= 4, let seconds = items[1].integer, let micros = items[2].integer,
                let playlist = items[3].string
            else { throw RedisError.unexpectedReply("heartbeat script returned \(reply)") }
            return .recorded(
                serverTime: UTCTimestamp(seconds: seconds, microseconds: micros),
                assignedPlaylist: playlist.isEmpty ? nil : playlist,
                commands: items.dropFirst(4).compactMap(\.string))
        }
    }
}
