import HeartbeatDomain
import RedisAdapter

/// Writes device registry entries into Redis, the gateway's copy of the registry.
///
/// PostgreSQL is the registry's truth (the monitor owns it); this is the one place that writes the
/// Redis side, used by the monitor when it registers, rotates or re-seeds, and by tests.
public struct DeviceRegistryCache: Sendable {
    public let redis: RedisClient
    public let keys: KeySchema

    public init(redis: RedisClient, keys: KeySchema) {
        self.redis = redis
        self.keys = keys
    }

    /// Creates or overwrites a device's entry: its token hash (stored as ``DeviceToken/redisDigest(ofHash:)``),
    /// and its assigned playlist when given.
    public func write(device: DeviceID, tokenHash: String, playlist: String? = nil) async throws {
        var command = ["HSET", keys.device(device), KeySchema.DeviceField.tokenHash, DeviceToken.redisDigest(ofHash: tokenHash)]
        if let playlist { command += [KeySchema.DeviceField.playlist, playlist] }
        try await redis.execute(command)
    }

    /// Registers a device with a new token and returns the token (the only time it is visible).
    public func register(device: DeviceID, playlist: String? = nil) async throws -> String {
        let token = DeviceToken.generate()
        try await write(device: device, tokenHash: DeviceToken.hash(token), playlist: playlist)
        return token
    }

    /// Sets the playlist the device should be playing.
    public func assignPlaylist(_ playlist: String, to device: DeviceID) async throws {
        try await redis.execute(["HSET", keys.device(device), KeySchema.DeviceField.playlist, playlist])
    }

    /// How long a command's state stays visible after it expires.
    public static let commandLogRetentionMs: Int64 = 7 * 86_400_000

    /// Queues a command for the device's heartbeats until it is acknowledged or expires.
    /// - Parameters:
    ///   - id: the command id; `json` must start with `{"id":"<id>"` (the script reads it there).
    ///   - json: the command as sent to the device.
    /// - Returns: false when the device already has `limit` commands waiting (nothing queued).
    @discardableResult
    public func enqueueCommand(id: String, type: String, json: String, expiresAt: UTCTimestamp, for device: DeviceID, limit: Int = 100) async throws
        -> Bool
    {
        let expires = expiresAt.millisecondsSinceEpoch
        let reply = try await redis.run(
            Self.boundedPush, keys: [keys.commands(device), keys.commandLog(device), keys.device(device)],
            arguments: [
                String(limit), "\(expires)|\(json)", id, CommandState.queuedValue(expiresAtMs: expires, type: type),
                String(expires + Self.commandLogRetentionMs),
            ])
        return (reply.integer ?? -1) >= 0
    }

    /// Every command the log still holds for the device, oldest expiry first.
    public func commands(of device: DeviceID, nowMs: Int64) async throws -> [CommandState] {
        let flat = try await redis.execute(["HGETALL", keys.commandLog(device)]).array ?? []
        var states: [CommandState] = []
        for index in stride(from: 0, to: flat.count - 1, by: 2) {
            guard let id = flat[index].string, let value = flat[index + 1].string,
                let state = CommandState(id: id, logValue: value, nowMs: nowMs)
            else { continue }
            states.append(state)
        }
        return states.sorted { ($0.expiresAtMs, $0.id) < ($1.expiresAtMs, $1.id) }
    }

    /// The last accepted heartbeat of each device (ms of Redis time), for those Redis has one.
    public func lastHeartbeats(of devices: [DeviceID]) async throws -> [DeviceID: Int64] {
        try await withThrowingTaskGroup(of: (DeviceID, Int64?).self) { group in
            for device in devices {
                group.addTask {
                    (device, try await redis.execute(["HGET", keys.device(device), KeySchema.DeviceField.lastHeartbeat]).integer)
                }
            }
            var times: [DeviceID: Int64] = [:]
            for try await (device, time) in group { times[device] = time }
            return times
        }
    }

    /// Sets the registry markers of `buckets` (their share of the registry is loaded).
    public func markLoaded(buckets: [Int]) async throws {
        for bucket in buckets { try await redis.execute(["SET", keys.registryMarker(bucket: bucket), "1"]) }
    }

    /// Buckets whose registry marker is missing (Redis lost that part of its data). Buckets whose
    /// Redis does not answer are left out; throws when one did not answer and none is missing.
    public func unloadedBuckets() async throws -> [Int] {
        // bucket by bucket: on a cluster with a primary down, the others' markers still answer
        let (missing, failure) = await withTaskGroup(of: Result<Int?, any Error>.self) { group in
            for bucket in keys.allBuckets {
                group.addTask {
                    do {
                        return .success(try await redis.execute(["EXISTS", keys.registryMarker(bucket: bucket)]) == .integer(0) ? bucket : nil)
                    } catch {
                        return .failure(error)
                    }
                }
            }
            return await group.reduce(into: ([Int](), (any Error)?.none)) { found, answer in
                switch answer {
                case .success(let bucket): if let bucket { found.0.append(bucket) }
                case .failure(let error): found.1 = found.1 ?? error
                }
            }
        }
        if missing.isEmpty, let failure { throw failure }
        return missing.sorted()
    }

    /// The latest heartbeat as stored in the device hash, and when Redis received it.
    public func latest(_ device: DeviceID) async throws -> (payload: HeartbeatPayload?, receivedAt: UTCTimestamp?) {
        let values =
            try await redis.execute([
                "HMGET", keys.device(device), KeySchema.DeviceField.payload, KeySchema.DeviceField.lastHeartbeat,
            ]).array ?? []
        guard values.count == 2 else { return (nil, nil) }
        return (
            values[0].string.flatMap { HeartbeatPayload(storedForm: $0, deviceID: device) },
            values[1].integer.map(UTCTimestamp.init(millisecondsSinceEpoch:))
        )
    }

    /// KEYS: command list, command log, device hash. ARGV: limit, entry, command id, log value, log
    /// expiry (ms). RPUSH unless the list already holds ARGV[1] entries, log the command as queued,
    /// and remove the hash's "no commands" mark (``KeySchema/DeviceField/noCommands``) so the next
    /// heartbeat reads the list; returns the new length, or -1 when full.
    public static let boundedPush = RedisScript(
        name: "bounded-push",
        source: #"""
            if redis.call('LLEN', KEYS[1]) >= tonumber(ARGV[1]) then return -1 end
            redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
            local t = redis.call('TIME')
            local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
            if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[5]) - now then redis.call('PEXPIREAT', KEYS[2], ARGV[5]) end
            redis.call('HDEL', KEYS[3], 'n')
            return redis.call('RPUSH', KEYS[1], ARGV[2])
            """#)
}
