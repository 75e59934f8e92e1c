import HeartbeatDomain
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
            guard let transition = StatusTransition(field: { entry.fields[$0] }), entry.id.contains("-") else {
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
}
