import HeartbeatDomain
import PostgresAdapter
import RedisAdapter

/// A bucket's transitions in stream order, as the array parameters of `apply_transitions`.
struct TransitionBatch: Sendable, Equatable {
    var ids: [String] = []
    var devices: [String] = []
    var kinds: [String] = []
    var atMs: [String] = []
    var lastMs: [String] = []
    var reasons: [String] = []
    /// Entries that are not transitions (corrupt or foreign): acknowledged and skipped.
    var malformed: [String] = []

    init(entries: [StreamEntry]) {
        for entry in entries {
            guard let transition = StatusTransition(fields: entry.fields), entry.id.contains("-") else {
                malformed.append(entry.id)
                continue
            }
            ids.append(entry.id)
            devices.append(transition.deviceID.string)
            kinds.append(transition.kind.rawValue)
            atMs.append(String(transition.at.millisecondsSinceEpoch))
            lastMs.append(String(transition.lastHeartbeat.millisecondsSinceEpoch))
            reasons.append(transition.kind == .offline ? "heartbeat_timeout" : "heartbeat_received")
        }
    }

    var isEmpty: Bool { ids.isEmpty }

    /// The SQL parameters for `apply_transitions($1 … $8)`.
    func parameters(bucket: Int, offlineAfter: Duration) -> [String?] {
        [String(bucket), PostgresArray.plain(ids), PostgresArray.plain(devices), PostgresArray.plain(kinds), PostgresArray.plain(atMs), PostgresArray.plain(lastMs),
         PostgresArray.plain(reasons), String(Double(offlineAfter.milliseconds) / 1000)]
    }

    static let sql = "SELECT apply_transitions($1::int, $2::text[], $3::uuid[], $4::text[], $5::bigint[], $6::bigint[], $7::text[], $8::float8)"
}
