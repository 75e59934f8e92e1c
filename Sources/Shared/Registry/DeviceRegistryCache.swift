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

    /// Creates or overwrites a device's entry: its token hash, and its assigned playlist when given.
    public func write(device: DeviceID, tokenHash: String, playlist: String? = nil) async throws {
        var command = ["HSET", keys.device(device), KeySchema.DeviceField.tokenHash, tokenHash]
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
    public func enqueueCommand(json: String, expiresAt: UTCTimestamp, for device: DeviceID) async throws {
        try await redis.execute(["RPUSH", keys.commands(device), "\(expiresAt.millisecondsSinceEpoch)|\(json)"])
    }
}
