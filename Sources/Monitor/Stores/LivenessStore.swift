import HeartbeatDomain

/// Liveness as the gateways write it: each bucket's online set (device → last heartbeat, Redis ms)
/// and its transitions stream. What the scanner, the reconciler and the registry re-seed change.
protocol LivenessStore: Sendable {
    /// Members of the bucket's online set silent longer than `silenceAllowed`, the set's size,
    /// and Redis's clock (ms).
    func countStale(bucket: Int, silenceAllowed: Duration) async throws -> StaleCount
    /// Moves up to `limit` members scored before `cutoffMs` offline, each with an `offline`
    /// transition. - Returns: how many moved, and how many stale ones remain.
    func declareOffline(bucket: Int, cutoffMs: Int64, limit: Int) async throws -> (declared: Int, remaining: Int)
    /// Which of `ids` are not in the bucket's online set.
    func absent(_ ids: [DeviceID], bucket: Int) async throws -> [DeviceID]
    /// Puts devices missing from the online set back with their score, unless a transition of
    /// theirs is in flight. Skips the bucket (returns nil) while its stream is longer than `streamLimit`.
    func restoreMissing(_ devices: [ScoredDevice], bucket: Int, streamLimit: Int) async throws -> [DeviceID]?
    /// Undoes ``restoreMissing(_:bucket:streamLimit:)`` for devices PostgreSQL turned offline meanwhile.
    func undoRestore(_ devices: [ScoredDevice], bucket: Int) async throws
    /// Adds an online device with its score unless a heartbeat already put it there.
    func seedOnline(_ device: ScoredDevice, bucket: Int) async throws
    /// Redis's clock, ms since the epoch.
    func nowMs() async throws -> Int64
    /// Whether Redis answers (within the client's timeout), and its `run_id`.
    func probe() async -> RedisProbe
}

/// What one probe of Redis found.
struct RedisProbe: Sendable, Equatable {
    /// The `run_id` (changes when Redis restarts; on a cluster, the primaries' joined) when all of
    /// Redis answered; `nil` when any of it did not (a cluster primary down: its devices cannot beat).
    var runID: String?
    /// Some of Redis answered: on a cluster with a primary down, the monitor's path to Redis still
    /// works, so it keeps leading (a standby would see the same cluster).
    var reachable: Bool
    /// Buckets whose Redis did not answer: none when all of Redis did, every bucket when none did,
    /// on a cluster with a primary down the buckets it serves. Their devices could not beat.
    var unreachableBuckets: Set<Int>

    /// All of Redis answered.
    static func reached(runID: String) -> RedisProbe { RedisProbe(runID: runID, reachable: true, unreachableBuckets: []) }

    /// None of Redis answered.
    static func unreachable(buckets: Range<Int>) -> RedisProbe { RedisProbe(runID: nil, reachable: false, unreachableBuckets: Set(buckets)) }
}

/// One bucket's count from ``LivenessStore/countStale(bucket:silenceAllowed:)``.
struct StaleCount: Sendable, Equatable {
    var stale: Int
    var online: Int
    var nowMs: Int64
}

/// A device and its online-set score (last heartbeat, Redis ms).
struct ScoredDevice: Sendable, Equatable {
    var id: DeviceID
    var scoreMs: Int64
}
