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

    /// Queues a command (already serialized as JSON) for the device's next heartbeat.
    /// - Returns: false when the device already has `limit` commands waiting (nothing queued).
    @discardableResult
    public func enqueueCommand(json: String, expiresAt: UTCTimestamp, for device: DeviceID, limit: Int = 100) async throws -> Bool {
        let reply = try await redis.run(Self.boundedPush, keys: [keys.commands(device)],
                                        arguments: [String(limit), "\(expiresAt.millisecondsSinceEpoch)|\(json)"])
        return (reply.integer ?? -1) >= 0
    }

    /// The latest heartbeat as stored in the device hash, and when Redis received it.
    public func latest(_ device: DeviceID) async throws -> (payload: HeartbeatPayload?, receivedAt: UTCTimestamp?) {
        let values = try await redis.execute([
            "HMGET", keys.device(device), KeySchema.DeviceField.payload, KeySchema.DeviceField.lastHeartbeat,
        ]).array ?? []
        guard values.count == 2 else { return (nil, nil) }
        return (values[0].string.flatMap { HeartbeatPayload(storedForm: $0, deviceID: device) },
                values[1].integer.map(UTCTimestamp.init(millisecondsSinceEpoch:)))
    }

    /// RPUSH unless the list already holds ARGV[1] entries; returns the new length, or -1 when full.
    public static let boundedPush = RedisScript(name: "bounded-push", source: #"""
if redis.call('LLEN', KEYS[1]) >= tonumber(ARGV[1]) then return -1 end
return redis.call('RPUSH', KEYS[1], ARGV[2])
"""#)
}
