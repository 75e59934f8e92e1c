import Foundation
import HeartbeatDomain
import Hummingbird

// The ops API's documents, as the store records become them (field names as in docs/openapi.yaml).

/// A device's new token (registration and rotation): the only time it is visible.
struct DeviceTokenResponse: ResponseEncodable, Sendable {
    var id: String
    var token: String
}

struct PlaylistResponse: ResponseEncodable, Sendable {
    var id: String
    var playlist_id: String
}

struct QueuedCommandResponse: ResponseEncodable, Sendable {
    var id: String
    var expires_at: String
}

/// A device row; `last_heartbeat` is the newer of PostgreSQL's and Redis's.
struct DeviceSummary: Encodable, Sendable {
    var id: String
    var name: Nullable<String>
    var status: String
    var status_version: Int64
    var last_heartbeat: Nullable<String>
    var status_changed_at: Nullable<String>
    var assigned_playlist: Nullable<String>

    init(_ device: DeviceRecord, redisLastHeartbeatMs: Int64?) {
        let last = [device.lastHeartbeat?.millisecondsSinceEpoch, redisLastHeartbeatMs].compactMap { $0 }.max()
        id = device.id.string
        name = Nullable(device.name)
        status = device.status.rawValue
        status_version = device.statusVersion
        last_heartbeat = Nullable(last.map { UTCTimestamp(millisecondsSinceEpoch: $0).iso8601 })
        status_changed_at = Nullable(device.statusChangedAt?.iso8601)
        assigned_playlist = Nullable(device.playlist)
    }
}

struct DeviceListResponse: ResponseEncodable, Sendable {
    var devices: [DeviceSummary]
    var next_cursor: Nullable<String>
}

/// The device detail: the row, the latest heartbeat Redis holds and the command states.
struct DeviceDetailResponse: ResponseEncodable, Sendable {
    var summary: DeviceSummary
    var latest: LatestHeartbeat
    var commands: [CommandStateResponse]

    func encode(to encoder: any Encoder) throws {
        try summary.encode(to: encoder)
        enum Keys: String, CodingKey { case latest, commands }
        var container = encoder.container(keyedBy: Keys.self)
        try container.encode(latest, forKey: .latest)
        try container.encode(commands, forKey: .commands)
    }
}

struct LatestHeartbeat: Encodable, Sendable {
    var payload: Nullable<JSONValue>
    var device_time: Nullable<String>
    var clock_offset_ms: Nullable<Int64>

    init(_ payload: HeartbeatPayload?, receivedAt: UTCTimestamp?) {
        self.payload = Nullable(payload.flatMap { JSONValue(json: $0.json) })
        device_time = Nullable(payload?.deviceTime.iso8601)
        clock_offset_ms = Nullable(
            payload.flatMap { payload in receivedAt.map { $0.millisecondsSinceEpoch - payload.deviceTime.millisecondsSinceEpoch } })
    }
}

struct CommandStateResponse: Encodable, Sendable {
    var id: String
    var type: String
    var state: String
    var deliveries: Int
    var last_delivered_at: Nullable<String>
    var acknowledged_at: Nullable<String>
    var expires_at: String

    init(_ command: CommandState) {
        id = command.id
        type = command.type
        state = command.state.rawValue
        deliveries = command.deliveries
        last_delivered_at = Nullable(command.lastDeliveredAtMs.map { UTCTimestamp(millisecondsSinceEpoch: $0).iso8601 })
        acknowledged_at = Nullable(
            command.state == .acknowledged ? command.settledAtMs.map { UTCTimestamp(millisecondsSinceEpoch: $0).iso8601 } : nil)
        expires_at = UTCTimestamp(millisecondsSinceEpoch: command.expiresAtMs).iso8601
    }
}

struct HeartbeatsResponse: ResponseEncodable, Sendable {
    struct Item: Encodable, Sendable {
        var received_at: String
        var device_time: String
        var payload: Nullable<JSONValue>

        init(_ row: HeartbeatRecord) {
            received_at = row.receivedAt.iso8601
            device_time = row.deviceTime.iso8601
            payload = Nullable(JSONValue(json: row.payloadJSON))
        }
    }

    var heartbeats: [Item]
}

struct EventsResponse: ResponseEncodable, Sendable {
    struct Item: Encodable, Sendable {
        var event_id: String
        var from: String
        var to: String
        var at: String
        var last_heartbeat: Nullable<String>
        var reason: String
        var status_version: Int64

        init(_ row: StatusEventRecord) {
            event_id = row.eventID
            from = row.from
            to = row.to
            at = row.at.iso8601
            last_heartbeat = Nullable(row.lastHeartbeat?.iso8601)
            reason = row.reason
            status_version = row.statusVersion
        }
    }

    var events: [Item]
}

struct UptimeResponse: ResponseEncodable, Sendable {
    var from: String
    var to: String
    var online_seconds: Double
    var online_fraction: Double
}
