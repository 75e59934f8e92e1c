import HeartbeatDomain
import NIOCore
import RedisAdapter

/// Records heartbeats in Redis with one `EVALSHA` of ``HeartbeatScript`` each.
struct RedisHeartbeatStore: HeartbeatStore {
    let redis: RedisClient
    let keys: KeySchema
    /// Each bucket's keys and key prefixes, built once: building the seven keys per heartbeat
    /// (string interpolation, an allocation each, the device's bucket hashed three more times)
    /// was most of the script call's cost, ~8% of the gateway's samples.
    private let bucketKeys: [BucketKeys]
    /// The script's minimum-interval and stream-cap arguments, formatted once.
    private let minimumIntervalArgument: String
    private let historyStreamCapArgument: String

    private struct BucketKeys {
        let online, transitions, history, registryMarker: String
        let devicePrefix, commandsPrefix, commandLogPrefix: String

        init(_ keys: KeySchema, bucket: Int) {
            online = keys.online(bucket: bucket)
            transitions = keys.transitions(bucket: bucket)
            history = keys.history(bucket: bucket)
            registryMarker = keys.registryMarker(bucket: bucket)
            devicePrefix = keys.devicePrefix(bucket: bucket)
            commandsPrefix = keys.commandsPrefix(bucket: bucket)
            commandLogPrefix = keys.commandLogPrefix(bucket: bucket)
        }
    }

    init(redis: RedisClient, keys: KeySchema, minimumInterval: Duration, historyStreamCap: Int) {
        self.redis = redis
        self.keys = keys
        bucketKeys = keys.allBuckets.map { BucketKeys(keys, bucket: $0) }
        minimumIntervalArgument = String(Int64(minimumInterval / .milliseconds(1)))
        historyStreamCapArgument = String(historyStreamCap)
    }

    func record(_ heartbeat: HeartbeatPayload, tokenHash: String) async throws -> HeartbeatOutcome {
        try Self.outcome(of: try await redis.run(scriptCall(heartbeat, tokenHash: tokenHash)))
    }

    /// The same script call over the event loop's own Redis connection, its reply decoded on the loop.
    func record(
        _ heartbeat: HeartbeatPayload, tokenHash: String, on eventLoop: any EventLoop,
        completion: @escaping @Sendable (Result<HeartbeatOutcome, any Error>) -> Void
    ) {
        redis.run(scriptCall(heartbeat, tokenHash: tokenHash), on: eventLoop) { reply in
            completion(reply.flatMap { reply in Result { try Self.outcome(of: reply) } })
        }
    }

    /// ``HeartbeatScript``'s call for one heartbeat, its keys and arguments written straight to RESP.
    private func scriptCall(_ heartbeat: HeartbeatPayload, tokenHash: String) -> RedisScriptCall {
        let id = heartbeat.deviceID.string
        let bucket = bucketKeys[keys.bucket(of: heartbeat.deviceID)]
        var call = RedisScriptCall(HeartbeatScript.script, keys: 7, arguments: 6, capacity: 512)
        call.appendKey(bucket.online)
        call.appendKey(bucket.devicePrefix, id)
        call.appendKey(bucket.commandsPrefix, id)
        call.appendKey(bucket.transitions)
        call.appendKey(bucket.history)
        call.appendKey(bucket.registryMarker)
        call.appendKey(bucket.commandLogPrefix, id)
        call.append(id)
        call.append(tokenHash)
        call.append(heartbeat.storedForm)
        call.append(minimumIntervalArgument)
        call.append(historyStreamCapArgument)
        call.append(heartbeat.ackedCommands.joined(separator: " "))
        return call
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
