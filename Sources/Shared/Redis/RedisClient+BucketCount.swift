import HeartbeatDomain

extension RedisClient {
    /// Records `BUCKETS` on first start and refuses a process configured with another count:
    /// devices would hash to other buckets, and half the fleet would look unknown or stay online forever.
    public func checkBucketCount(_ keys: KeySchema) async throws {
        // SET NX, then GET: `SET … NX GET` needs Redis 7
        guard try await execute(["SET", KeySchema.bucketCountKey, String(keys.buckets), "NX"]) == .null else { return }
        if let value = try await execute(["GET", KeySchema.bucketCountKey]).string, value != String(keys.buckets) {
            throw BucketCountMismatch(configured: keys.buckets, recorded: value)
        }
    }
}
