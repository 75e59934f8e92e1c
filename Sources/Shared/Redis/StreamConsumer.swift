/// Reading a stream with a consumer group, as the monitor's workers do: entries left pending (by
/// this consumer before a crash, or by a dead instance) are claimed first, then new ones are read.
public struct StreamConsumer: Sendable {
    public let redis: RedisClient
    public let group: String
    public let consumer: String

    public init(redis: RedisClient, group: String, consumer: String) {
        self.redis = redis
        self.group = group
        self.consumer = consumer
    }

    /// Creates the group on each stream (from its start, so nothing written before is missed).
    public func createGroup(on streams: some Sequence<String>) async throws {
        for stream in streams {
            let reply = try await redis.send(["XGROUP", "CREATE", stream, group, "0", "MKSTREAM"])
            if case .error(let message) = reply, !message.hasPrefix("BUSYGROUP") { throw RedisError.server(message) }
        }
    }

    /// The next batch: pending entries claimed (`claimed` true), or else new ones.
    public func nextBatch(_ stream: String, count: Int, beforeReading: () async throws -> Void = {}) async throws -> (entries: [StreamEntry], claimed: Bool) {
        let pending = StreamEntry.fromAutoClaim(try await redis.execute(
            ["XAUTOCLAIM", stream, group, consumer, "0", "0-0", "COUNT", String(count)]))
        if !pending.isEmpty { return (pending, true) }
        try await beforeReading()
        let fresh = StreamEntry.fromRead(try await redis.execute(
            ["XREADGROUP", "GROUP", group, consumer, "COUNT", String(count), "STREAMS", stream, ">"]))
        return (fresh, false)
    }

    /// Acknowledges entries (after what they carry is safely stored).
    public func acknowledge(_ entries: [StreamEntry], on stream: String) async throws {
        guard !entries.isEmpty else { return }
        try await redis.execute(["XACK", stream, group] + entries.map(\.id))
    }

    /// Trims the stream after entries this consumer acknowledged, up to `lastID`, but never past the
    /// lowest entry still pending in the group: another instance (an old leader not yet aware it
    /// lost the lock) may hold entries it read and has not stored, and a trimmed entry could not
    /// be claimed any more.
    public func trimAcknowledged(through lastID: String, on stream: String) async throws {
        guard var bound = Self.successor(of: lastID) else { return }
        let summary = try await redis.execute(["XPENDING", stream, group]).array ?? []
        if summary.count >= 2, (summary[0].integer ?? 0) > 0, let lowest = summary[1].string, Self.compare(lowest, bound) < 0 {
            bound = lowest
        }
        try await redis.execute(["XTRIM", stream, "MINID", bound])
    }

    /// True when the error says the group is gone (Redis lost the stream): create it again.
    public static func isMissingGroup(_ error: any Error) -> Bool {
        if case RedisError.server(let message) = error { return message.hasPrefix("NOGROUP") }
        return false
    }

    /// The smallest stream id after `id` (`ms-seq` → `ms-(seq+1)`).
    public static func successor(of id: String) -> String? {
        let parts = id.split(separator: "-")
        guard parts.count == 2, let ms = UInt64(parts[0]), let seq = UInt64(parts[1]) else { return nil }
        return seq == UInt64.max ? "\(ms + 1)-0" : "\(ms)-\(seq + 1)"
    }

    /// Orders two stream ids.
    public static func compare(_ a: String, _ b: String) -> Int {
        func parts(_ id: String) -> (UInt64, UInt64) {
            let p = id.split(separator: "-")
            return (UInt64(p.first ?? "0") ?? 0, UInt64(p.count > 1 ? p[1] : "0") ?? 0)
        }
        let (x, y) = (parts(a), parts(b))
        return x == y ? 0 : (x < y ? -1 : 1)
    }
}
