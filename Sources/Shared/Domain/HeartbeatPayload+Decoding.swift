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

    /// The body is not JSON.
    public static let malformedBody = PayloadValidationError(field: nil, message: "malformed JSON body")
}

extension HeartbeatPayload {
    /// A member as found in the body, before validation: type errors are reported only once the
    /// whole body is known to be JSON, so a malformed body is always reported as malformed.
    private enum Found {
        case absent
        case string(String)
        case storage(total: FoundNumber, used: FoundNumber)
        case strings([String])
        case wrongType
    }

    /// A member of `storage_status` as found in the body.
    private enum FoundNumber {
        case absent
        case number(Double)
        case wrongType
    }

    /// Decodes and validates a heartbeat body.
    /// - Throws: ``PayloadValidationError`` naming the first field at fault.
    public static func decode(json: Data) throws(PayloadValidationError) -> HeartbeatPayload {
        try json.withUnsafeBytes { decodeResult(utf8: $0) }.get()
    }

    /// Decodes and validates a heartbeat body given as UTF-8 bytes (one pass, no intermediate tree).
    /// - Throws: ``PayloadValidationError`` naming the first field at fault.
    public static func decode(utf8 bytes: UnsafeRawBufferPointer) throws(PayloadValidationError) -> HeartbeatPayload {
        try decodeResult(utf8: bytes).get()
    }

    private static func decodeResult(utf8 bytes: UnsafeRawBufferPointer) -> Result<HeartbeatPayload, PayloadValidationError> {
        var scanner = JSONScanner(bytes)
        do throws(JSONScanner.Malformed) {
            guard try scanner.peekKind() == .object else {
                try scanner.skipValue()
                try scanner.expectEnd()
                return .failure(.init(field: nil, message: "body must be a JSON object"))
            }
            var id = Found.absent
            var time = Found.absent
            var playlist = Found.absent
            var storage = Found.absent
            var network = Found.absent
            var version = Found.absent
            var acked = Found.absent
            try scanner.readObject { (key, scanner) throws(JSONScanner.Malformed) in
                switch key {
                case "device_id": id = try readString(&scanner)
                case "timestamp": time = try readString(&scanner)
                case "current_playlist": playlist = try readString(&scanner)
                case "network_status": network = try readString(&scanner)
                case "player_version": version = try readString(&scanner)
                case "storage_status": storage = try readStorage(&scanner)
                case "acked_commands": acked = try readStrings(&scanner)
                default: try scanner.skipValue(depth: 1)
                }
            }
            try scanner.expectEnd()
            return Result { () throws(PayloadValidationError) in
                var payload = try validate(id: id, time: time, playlist: playlist, storage: storage, network: network, version: version)
                payload.ackedCommands = try commandIDs(acked)
                return payload
            }
        } catch {
            return .failure(.malformedBody)
        }
    }

    private static func readString(_ scanner: inout JSONScanner) throws(JSONScanner.Malformed) -> Found {
        let kind = try scanner.peekKind()
        switch kind {
        case .string: return .string(try scanner.readString())
        case .null:
            _ = try scanner.readNull()
            return .absent
        default:
            try scanner.skipValue(depth: 1)
            return .wrongType
        }
    }

    private static func readStrings(_ scanner: inout JSONScanner) throws(JSONScanner.Malformed) -> Found {
        switch try scanner.peekKind() {
        case .array:
            var values: [String] = []
            var wrongType = false
            try scanner.readArray(depth: 1) { (scanner) throws(JSONScanner.Malformed) in
                if try scanner.peekKind() == .string {
                    values.append(try scanner.readString())
                } else {
                    wrongType = true
                    try scanner.skipValue(depth: 2)
                }
            }
            return wrongType ? .wrongType : .strings(values)
        case .null:
            _ = try scanner.readNull()
            return .absent
        default:
            try scanner.skipValue(depth: 1)
            return .wrongType
        }
    }

    /// `acked_commands`: up to 100 command ids of letters, digits, `-` and `_`.
    private static func commandIDs(_ found: Found) throws(PayloadValidationError) -> [String] {
        switch found {
        case .absent: return []
        case .strings(let ids):
            guard ids.count <= Limits.ackedCommands else {
                throw .init(field: "acked_commands", message: "must list at most \(Limits.ackedCommands) command ids")
            }
            for id in ids {
                let bytes = id.utf8
                guard !bytes.isEmpty, bytes.count <= Limits.commandIDLength,
                    bytes.allSatisfy({
                        $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") || (0x30...0x39).contains($0) || (0x41...0x5A).contains($0 & 0xDF)
                    })
                else {
                    throw .init(
                        field: "acked_commands",
                        message: "must hold command ids as received: 1 to \(Limits.commandIDLength) letters, digits, '-' or '_'")
                }
            }
            return ids
        default: throw .init(field: "acked_commands", message: "must be an array of command id strings")
        }
    }

    private static func readStorage(_ scanner: inout JSONScanner) throws(JSONScanner.Malformed) -> Found {
        let kind = try scanner.peekKind()
        switch kind {
        case .object:
            var total = FoundNumber.absent
            var used = FoundNumber.absent
            try scanner.readObject(depth: 1) { (key, scanner) throws(JSONScanner.Malformed) in
                switch key {
                case "total_gb": total = try readNumber(&scanner)
                case "used_gb": used = try readNumber(&scanner)
                default: try scanner.skipValue(depth: 2)
                }
            }
            return .storage(total: total, used: used)
        case .null:
            _ = try scanner.readNull()
            return .absent
        default:
            try scanner.skipValue(depth: 1)
            return .wrongType
        }
    }

    private static func readNumber(_ scanner: inout JSONScanner) throws(JSONScanner.Malformed) -> FoundNumber {
        switch try scanner.peekKind() {
        case .number: return .number(try scanner.readNumber())
        case .null:
            _ = try scanner.readNull()
            return .absent
        default:
            try scanner.skipValue(depth: 2)
            return .wrongType
        }
    }

    private static func validate(
        id: Found, time: Found, playlist: Found, storage: Found, network: Found, version: Found
    ) throws(PayloadValidationError) -> HeartbeatPayload {
        // Types first, in field order, as a schema check would report them (no arrays: this runs per heartbeat).
        func requireString(_ found: Found, _ field: String) throws(PayloadValidationError) {
            if case .wrongType = found { throw .init(field: field, message: "must be a string") }
        }
        try requireString(id, "device_id")
        try requireString(time, "timestamp")
        try requireString(playlist, "current_playlist")
        if case .wrongType = storage { throw .init(field: "storage_status", message: "must be an object") }
        if case .storage(let total, let used) = storage {
            if case .wrongType = total { throw .init(field: "storage_status.total_gb", message: "must be a number") }
            if case .wrongType = used { throw .init(field: "storage_status.used_gb", message: "must be a number") }
        }
        try requireString(network, "network_status")
        try requireString(version, "player_version")

        guard case .string(let rawID) = id else { throw .init(field: "device_id", message: "is required") }
        guard let deviceID = DeviceID(rawID) else { throw .init(field: "device_id", message: "must be a UUID") }
        guard case .string(let rawTime) = time else { throw .init(field: "timestamp", message: "is required") }
        guard let deviceTime = UTCTimestamp(iso8601: rawTime) else {
            throw .init(field: "timestamp", message: "must be an ISO-8601 date-time with a time zone, e.g. 2026-02-02T10:30:00Z")
        }
        guard deviceTime >= Limits.earliestDeviceTime, deviceTime <= Limits.latestDeviceTime else {
            throw .init(field: "timestamp", message: "must lie between 1970-01-01T00:00:00Z and 9999-12-31T23:59:59Z")
        }
        var storageStatus: StorageStatus?
        if case .storage(let total, let used) = storage {
            storageStatus = StorageStatus(
                totalGB: try storageFigure(total, field: "storage_status.total_gb"),
                usedGB: try storageFigure(used, field: "storage_status.used_gb"))
        }
        return HeartbeatPayload(
            deviceID: deviceID,
            deviceTime: deviceTime,
            currentPlaylist: try text(playlist, field: "current_playlist", limit: Limits.playlistLength),
            storage: storageStatus,
            networkStatus: try text(network, field: "network_status", limit: Limits.networkStatusLength),
            playerVersion: try text(version, field: "player_version", limit: Limits.playerVersionLength)
        )
    }

    private static func storageFigure(_ found: FoundNumber, field: String) throws(PayloadValidationError) -> Double {
        guard case .number(let value) = found else { throw .init(field: field, message: "is required in storage_status") }
        guard value >= 0 else { throw .init(field: field, message: "must not be negative") }
        guard value <= Limits.storageGB else { throw .init(field: field, message: "is implausibly large") }
        return value
    }

    private static func text(_ found: Found, field: String, limit: Int) throws(PayloadValidationError) -> String? {
        guard case .string(let value) = found else { return nil }
        guard !value.isEmpty else { throw .init(field: field, message: "must not be empty (omit it or send null)") }
        let utf8 = value.utf8
        if !utf8.contains(where: { $0 >= 0x80 }) {
            // ASCII (the usual case): characters are bytes, controls are 0x00-0x1F and 0x7F.
            guard utf8.count <= limit else { throw .init(field: field, message: "must be at most \(limit) characters") }
            guard !utf8.contains(where: { $0 < 0x20 || $0 == 0x7F }) else {
                throw .init(field: field, message: "must not contain control characters")
            }
            return value
        }
        guard value.count <= limit else { throw .init(field: field, message: "must be at most \(limit) characters") }
        guard !value.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw .init(field: field, message: "must not contain control characters")
        }
        return value
    }
}
