import HeartbeatDomain

/// The gateway's copy of the registry in Redis, and what only Redis knows of a device (its latest
/// heartbeat, its command queue). ``DeviceRegistryCache`` is the Redis version.
protocol RegistryCache: Sendable {
    /// Creates or overwrites a device's entry: token hash, and playlist when given.
    func write(device: DeviceID, tokenHash: String, playlist: String?) async throws
    func assignPlaylist(_ playlist: String, to device: DeviceID) async throws
    /// Queues a command. - Returns: false when the device already has `limit` waiting.
    func enqueueCommand(id: String, type: String, json: String, expiresAt: UTCTimestamp, for device: DeviceID, limit: Int) async throws -> Bool
    func commands(of device: DeviceID, nowMs: Int64) async throws -> [CommandState]
    func lastHeartbeats(of devices: [DeviceID]) async throws -> [DeviceID: Int64]
    func latest(_ device: DeviceID) async throws -> (payload: HeartbeatPayload?, receivedAt: UTCTimestamp?)
    func markLoaded(buckets: [Int]) async throws
    /// Records the deployment's `BUCKETS` in Redis again (lost with Redis's data); throws
    /// ``BucketCountMismatch`` when Redis records another count.
    func recordBucketCount() async throws
    func unloadedBuckets() async throws -> [Int]
}

extension DeviceRegistryCache: RegistryCache {
    func recordBucketCount() async throws {
        try await redis.checkBucketCount(keys)
    }
}
