/// The Redis key layout of DESIGN.md, bucketed so a fleet can spread over a Redis Cluster.
///
/// `bucket = fnv1a32(canonical device id) mod buckets`; every key of a bucket carries the hash tag
/// `{b}`, so a script touching one device (or one bucket) stays within one cluster slot.
public struct KeySchema: Sendable, Equatable {
    /// Number of buckets; fixed for the life of a deployment (changing it moves every device).
    public let buckets: Int

    public init(buckets: Int) {
        precondition(buckets > 0, "buckets must be positive")
        self.buckets = buckets
    }

    /// The bucket a device lives in.
    public func bucket(of device: DeviceID) -> Int {
        // over the contiguous bytes: iterating `String.UTF8View` was the largest part of building a
        // heartbeat's script call (~1% of the gateway's samples)
        var id = device.string
        let hash = id.withUTF8 { bytes in
            var hash: UInt32 = 2_166_136_261
            for byte in bytes {
                hash ^= UInt32(byte)
                hash &*= 16_777_619
            }
            return hash
        }
        return Int(hash % UInt32(buckets))
    }

    /// Every bucket number, for scanners and stream readers.
    public var allBuckets: Range<Int> { 0..<buckets }

    /// Sorted set of online devices; score = last heartbeat in ms (Redis time).
    public func online(bucket: Int) -> String { "hb:{\(bucket)}:online" }
    /// Stream of `online` / `offline` transitions.
    public func transitions(bucket: Int) -> String { "hb:{\(bucket)}:transitions" }
    /// Stream with one entry per accepted heartbeat.
    public func history(bucket: Int) -> String { "hb:{\(bucket)}:history" }

    /// Hash with the device's token hash, assigned playlist and latest payload.
    public func device(_ id: DeviceID) -> String { devicePrefix(bucket: bucket(of: id)) + id.string }
    /// List of pending commands, each `"<expiry ms>|<command JSON>"`; an entry leaves it when the
    /// device acknowledges it or it expires.
    public func commands(_ id: DeviceID) -> String { commandsPrefix(bucket: bucket(of: id)) + id.string }
    /// Hash of each command's delivery state, field = command id (see ``CommandState``).
    public func commandLog(_ id: DeviceID) -> String { commandLogPrefix(bucket: bucket(of: id)) + id.string }

    /// ``device(_:)`` without the id: the same for every device of `bucket`.
    public func devicePrefix(bucket: Int) -> String { "hb:{\(bucket)}:dev:" }
    /// ``commands(_:)`` without the id.
    public func commandsPrefix(bucket: Int) -> String { "hb:{\(bucket)}:cmds:" }
    /// ``commandLog(_:)`` without the id.
    public func commandLogPrefix(bucket: Int) -> String { "hb:{\(bucket)}:cmdlog:" }

    /// Present while the bucket's share of the registry is loaded. Redis is a cache of PostgreSQL's
    /// registry: when this key is missing (data lost), an unknown device may be a known one not
    /// re-seeded yet, so the gateway answers `503` instead of `404` and the monitor re-seeds.
    public func registryMarker(bucket: Int) -> String { "hb:{\(bucket)}:seeded" }
    /// The bucket count the deployment was started with; gateways and monitors refuse another.
    public static let bucketCountKey = "hb:config:buckets"

    /// Field names of the device hash.
    public enum DeviceField {
        /// The first 32 hex digits (128 bits) of the device token's SHA-256 (``DeviceToken/redisDigest(ofHash:)``).
        public static let tokenHash = "token"
        public static let playlist = "playlist"
        /// Last accepted heartbeat, ms of Redis time.
        public static let lastHeartbeat = "last_heartbeat"
        /// The latest heartbeat, in ``HeartbeatPayload/storedForm`` (device clock included).
        public static let payload = "payload"
        /// `1`: the device's command list was empty at its last heartbeat and nothing was queued
        /// since, so the heartbeat script skips reading it. Queuing a command removes it.
        public static let noCommands = "n"
    }

    /// Field names of a history stream entry.
    public enum HistoryField {
        public static let device = "d"
        /// Redis time of the heartbeat, ms.
        public static let receivedAt = "t"
        /// The heartbeat, in ``HeartbeatPayload/storedForm``.
        public static let payload = "p"
    }
}
