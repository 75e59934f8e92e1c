import Foundation

/// Why a heartbeat body was refused: the field at fault (dotted path) and a sentence for the device's developer.
public struct PayloadValidationError: Error, Equatable, Sendable, CustomStringConvertible {
    public var field: String?
    public var message: String

    public init(field: String?, message: String) {
        self.field = field
        self.message = message
    }

    public var description: String { field.map { "\($0): \(message)" } ?? message }
}

extension HeartbeatPayload {
    /// Wire shape: every field optional so that missing fields get a precise message instead of a
    /// generic decoding failure.
    private struct Wire: Decodable {
        struct Storage: Decodable {
            var total_gb: Double?
            var used_gb: Double?
        }
        var device_id: String?
        var timestamp: String?
        var current_playlist: String?
        var storage_status: Storage?
        var network_status: String?
        var player_version: String?
    }

    /// Decodes and validates a heartbeat body.
    /// - Throws: ``PayloadValidationError`` naming the first field at fault.
    public static func decode(json: Data) throws(PayloadValidationError) -> HeartbeatPayload {
        let wire: Wire
        do {
            wire = try JSONDecoder().decode(Wire.self, from: json)
        } catch let error as DecodingError {
            throw Self.describe(error)
        } catch {
            throw PayloadValidationError(field: nil, message: "malformed JSON body")
        }
        return try validate(wire)
    }

    private static func validate(_ wire: Wire) throws(PayloadValidationError) -> HeartbeatPayload {
        guard let rawID = wire.device_id else {
            throw .init(field: "device_id", message: "is required")
        }
        guard let deviceID = DeviceID(rawID) else {
            throw .init(field: "device_id", message: "must be a UUID")
        }
        guard let rawTime = wire.timestamp else {
            throw .init(field: "timestamp", message: "is required")
        }
        guard let deviceTime = UTCTimestamp(iso8601: rawTime) else {
            throw .init(field: "timestamp", message: "must be an ISO-8601 date-time with a time zone, e.g. 2026-02-02T10:30:00Z")
        }
        guard deviceTime >= Limits.earliestDeviceTime, deviceTime <= Limits.latestDeviceTime else {
            throw .init(field: "timestamp", message: "must lie between 1970-01-01T00:00:00Z and 9999-12-31T23:59:59Z")
        }
        var storage: StorageStatus?
        if let raw = wire.storage_status {
            let total = try storageFigure(raw.total_gb, field: "storage_status.total_gb")
            let used = try storageFigure(raw.used_gb, field: "storage_status.used_gb")
            storage = StorageStatus(totalGB: total, usedGB: used)
        }
        return HeartbeatPayload(
            deviceID: deviceID,
            deviceTime: deviceTime,
            currentPlaylist: try text(wire.current_playlist, field: "current_playlist", limit: Limits.playlistLength),
            storage: storage,
            networkStatus: try text(wire.network_status, field: "network_status", limit: Limits.networkStatusLength),
            playerVersion: try text(wire.player_version, field: "player_version", limit: Limits.playerVersionLength)
        )
    }

    private static func storageFigure(_ value: Double?, field: String) throws(PayloadValidationError) -> Double {
        guard let value else { throw .init(field: field, message: "is required in storage_status") }
        guard value.isFinite, value >= 0 else { throw .init(field: field, message: "must not be negative") }
        guard value <= Limits.storageGB else { throw .init(field: field, message: "is implausibly large") }
        return value
    }

    private static func text(_ value: String?, field: String, limit: Int) throws(PayloadValidationError) -> String? {
        guard let value else { return nil }
        guard !value.isEmpty else { throw .init(field: field, message: "must not be empty (omit it or send null)") }
        guard value.count <= limit else { throw .init(field: field, message: "must be at most \(limit) characters") }
        guard !value.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw .init(field: field, message: "must not contain control characters")
        }
        return value
    }

    private static func describe(_ error: DecodingError) -> PayloadValidationError {
        func path(_ context: DecodingError.Context) -> String? {
            let keys = context.codingPath.map(\.stringValue)
            return keys.isEmpty ? nil : keys.joined(separator: ".")
        }
        switch error {
        case .typeMismatch(let type, let context):
            let field = path(context)
            guard field != nil else { return .init(field: nil, message: "body must be a JSON object") }
            let expected = type == Double.self ? "a number" : type == String.self ? "a string" : "an object"
            return .init(field: field, message: "must be \(expected)")
        case .valueNotFound(_, let context):
            return .init(field: path(context), message: "must not be null")
        case .keyNotFound(let key, _):
            return .init(field: key.stringValue, message: "is required")
        case .dataCorrupted(let context):
            if let field = path(context) { return .init(field: field, message: "is invalid") }
            return .init(field: nil, message: "malformed JSON body")
        @unknown default:
            return .init(field: nil, message: "malformed JSON body")
        }
    }
}
