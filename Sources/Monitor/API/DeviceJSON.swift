import Foundation
import HeartbeatDomain

/// The ops API's JSON shapes of the stores' records (dictionaries for `JSONBody`, `NSNull()` for null).
enum DeviceJSON {
    /// A device row; `last_heartbeat` is the newer of PostgreSQL's and Redis's.
    static func summary(_ device: DeviceRecord, redisLastHeartbeatMs: Int64?) -> [String: Any] {
        let last = [device.lastHeartbeat?.millisecondsSinceEpoch, redisLastHeartbeatMs].compactMap { $0 }.max()
        return [
            "id": device.id.string, "name": orNull(device.name), "status": device.status.rawValue,
            "status_version": Int(device.statusVersion),
            "last_heartbeat": orNull(last.map { UTCTimestamp(millisecondsSinceEpoch: $0).iso8601 }),
            "status_changed_at": orNull(device.statusChangedAt?.iso8601), "assigned_playlist": orNull(device.playlist),
        ]
    }

    /// The latest heartbeat Redis holds: payload, device time and clock offset.
    static func latest(_ payload: HeartbeatPayload?, receivedAt: UTCTimestamp?) -> [String: Any] {
        guard let payload else { return ["payload": NSNull(), "device_time": NSNull(), "clock_offset_ms": NSNull()] }
        return [
            "payload": (try? JSONSerialization.jsonObject(with: Data(payload.json.utf8))) ?? NSNull(),
            "device_time": payload.deviceTime.iso8601,
            "clock_offset_ms": orNull(receivedAt.map { $0.millisecondsSinceEpoch - payload.deviceTime.millisecondsSinceEpoch }),
        ]
    }

    static func command(_ command: CommandState) -> [String: Any] {
        [
            "id": command.id, "type": command.type, "state": command.state.rawValue, "deliveries": command.deliveries,
            "last_delivered_at": orNull(command.lastDeliveredAtMs.map { UTCTimestamp(millisecondsSinceEpoch: $0).iso8601 }),
            "acknowledged_at": orNull(
                command.state == .acknowledged ? command.settledAtMs.map { UTCTimestamp(millisecondsSinceEpoch: $0).iso8601 } : nil),
            "expires_at": UTCTimestamp(millisecondsSinceEpoch: command.expiresAtMs).iso8601,
        ]
    }

    static func heartbeat(_ row: HeartbeatRecord) -> [String: Any] {
        [
            "received_at": row.receivedAt.iso8601, "device_time": row.deviceTime.iso8601,
            "payload": (try? JSONSerialization.jsonObject(with: Data(row.payloadJSON.utf8))) ?? NSNull(),
        ]
    }

    static func event(_ row: StatusEventRecord) -> [String: Any] {
        [
            "event_id": row.eventID, "from": row.from, "to": row.to, "at": row.at.iso8601,
            "last_heartbeat": orNull(row.lastHeartbeat?.iso8601), "reason": row.reason, "status_version": Int(row.statusVersion),
        ]
    }
}
