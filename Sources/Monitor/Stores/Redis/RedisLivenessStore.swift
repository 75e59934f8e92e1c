import HeartbeatDomain
import RedisAdapter

/// ``LivenessStore`` on Redis: the offline-scan and reconcile scripts, one bucket per call.
struct RedisLivenessStore: LivenessStore {
    let redis: RedisClient
    let keys: KeySchema

    /// The scripts this store runs, loaded at start.
    static let scripts = [OfflineScanScript.count, OfflineScanScript.apply, ReconcileScript.restore, ReconcileScript.undo]

    private func bucketKeys(_ bucket: Int) -> [String] {
        [keys.online(bucket: bucket), keys.transitions(bucket: bucket)]
    }

    func countStale(bucket: Int, silenceAllowed: Duration) async throws -> StaleCount {
        let reply = try await redis.run(OfflineScanScript.count, keys: bucketKeys(bucket), arguments: [String(silenceAllowed.milliseconds)])
        let values = reply.array?.compactMap(\.integer) ?? []
        guard values.count == 3 else { throw RedisError.unexpectedReply("offline count returned \(reply)") }
        return StaleCount(stale: Int(values[0]), online: Int(values[1]), nowMs: values[2])
    }

    func declareOffline(bucket: Int, cutoffMs: Int64, limit: Int) async throws -> (declared: Int, remaining: Int) {
        let reply = try await redis.run(OfflineScanScript.apply, keys: bucketKeys(bucket), arguments: [String(cutoffMs), String(limit)])
        let values = reply.array?.compactMap(\.integer) ?? []
        guard values.count == 2 else { throw RedisError.unexpectedReply("offline apply returned \(reply)") }
        return (Int(values[0]), Int(values[1]))
    }

    func absent(_ ids: [DeviceID], bucket: Int) async throws -> [DeviceID] {
        guard !ids.isEmpty else { return [] }
        let scores = try await redis.execute(["ZMSCORE", keys.online(bucket: bucket)] + ids.map(\.string)).array ?? []
        guard scores.count == ids.count else { throw RedisError.unexpectedReply("ZMSCORE returned \(scores.count) of \(ids.count) scores") }
        return zip(ids, scores).compactMap { $1 == .null ? $0 : nil }
    }

    func restoreMissing(_ devices: [ScoredDevice], bucket: Int, streamLimit: Int) async throws -> [DeviceID]? {
        let reply = try await redis.run(
            ReconcileScript.restore, keys: bucketKeys(bucket),
            arguments: [String(streamLimit)] + devices.flatMap { [$0.id.string, String($0.scoreMs)] })
        guard let added = reply.array else { return nil }  // -1: the stream is too long this round
        return added.compactMap { $0.string.flatMap(DeviceID.init) }
    }

    func undoRestore(_ devices: [ScoredDevice], bucket: Int) async throws {
        _ = try await redis.run(
            ReconcileScript.undo, keys: bucketKeys(bucket),
            arguments: devices.flatMap { [$0.id.string, String($0.scoreMs)] })
    }

    func seedOnline(_ device: ScoredDevice, bucket: Int) async throws {
        try await redis.execute(["ZADD", keys.online(bucket: bucket), "NX", String(device.scoreMs), device.id.string])
    }

    func nowMs() async throws -> Int64 {
        let time = try await redis.execute(["TIME"]).array ?? []
        guard time.count == 2, let seconds = time[0].integer, let micros = time[1].integer else {
            throw RedisError.unexpectedReply("TIME returned \(time)")
        }
        return seconds * 1000 + micros / 1000
    }

    func probe() async -> RedisProbe {
        guard let replies = try? await redis.tryEachPrimary(["INFO", "server"]) else { return .unreachable(buckets: keys.allBuckets) }
        let runIDs = replies.compactMap { (try? $0.get()).flatMap(RedisClient.runID(inInfo:)) }
        if runIDs.count == replies.count { return .reached(runID: runIDs.joined(separator: ",")) }
        if runIDs.isEmpty { return .unreachable(buckets: keys.allBuckets) }
        // part of a cluster answered: which buckets, by a keyed read on each (routed to its slot's primary)
        let unreachable = await withTaskGroup(of: Int?.self) { group in
            for bucket in keys.allBuckets {
                group.addTask {
                    let reply = try? await redis.send(["EXISTS", keys.registryMarker(bucket: bucket)])
                    return reply?.integer == nil ? bucket : nil
                }
            }
            return await group.reduce(into: Set<Int>()) { if let bucket = $1 { $0.insert(bucket) } }
        }
        return RedisProbe(runID: nil, reachable: true, unreachableBuckets: unreachable)
    }
}
