import Foundation

extension HeartbeatPayload {
    /// The payload as Redis keeps it (the device hash's `payload` field and the history stream's `p`):
    /// tab-separated `device time ms, playlist, total GB, used GB, network status, player version`,
    /// an empty field for an absent value, the device id left out (it is in the key or the entry).
    ///
    /// ~40 bytes instead of ~210 of JSON: it keeps a device's Redis footprint under 400 bytes and
    /// makes every heartbeat's writes smaller. Unambiguous because validation refuses control
    /// characters (a tab among them) and empty strings in every text field.
    public var storedForm: String {
        var text = String(deviceTime.millisecondsSinceEpoch)
        text.reserveCapacity(64)
        text += "\t"
        if let currentPlaylist { text += currentPlaylist }
        text += "\t"
        if let storage {
            text += JSONText.number(storage.totalGB)
            text += "\t"
            text += JSONText.number(storage.usedGB)
        } else {
            text += "\t"
        }
        text += "\t"
        if let networkStatus { text += networkStatus }
        text += "\t"
        if let playerVersion { text += playerVersion }
        return text
    }

    /// Reads a payload back from ``storedForm``; also accepts the compact JSON written by earlier
    /// versions. `nil` when `stored` is neither.
    public init?(storedForm stored: String, deviceID: DeviceID) {
        if stored.utf8.first == UInt8(ascii: "{") {
            guard let legacy = try? HeartbeatPayload.decode(json: Data(stored.utf8)), legacy.deviceID == deviceID else { return nil }
            self = legacy
            return
        }
        let fields = stored.split(separator: "\t", omittingEmptySubsequences: false)
        guard fields.count == 6, let ms = Int64(fields[0]) else { return nil }
        func text(_ index: Int) -> String? { fields[index].isEmpty ? nil : String(fields[index]) }
        var storage: StorageStatus?
        if !fields[2].isEmpty || !fields[3].isEmpty {
            guard let total = Double(fields[2]), let used = Double(fields[3]) else { return nil }
            storage = StorageStatus(totalGB: total, usedGB: used)
        }
        self.init(
            deviceID: deviceID, deviceTime: UTCTimestamp(millisecondsSinceEpoch: ms), currentPlaylist: text(1),
            storage: storage, networkStatus: text(4), playerVersion: text(5))
    }
}

extension HeartbeatPayload {
    /// Appends the JSON of a payload in ``storedForm`` (the same text as ``storedJSON``) straight
    /// from its bytes, for the history writer's hot loop: no intermediate payload or strings.
    /// With `doublingBackslashes`, every `\` is written twice (PostgreSQL's `COPY` text format).
    ///
    /// - Returns: the device time (ms), or `nil` when `stored` is not a valid stored form
    ///   (nothing is appended then). The JSON of earlier versions is not handled here.
    public static func appendJSON(
        ofStoredForm stored: String, deviceID: DeviceID, to out: inout [UInt8], doublingBackslashes: Bool
    ) -> Int64? {
        var stored = stored
        return stored.withUTF8 { bytes -> Int64? in
            // six tab-separated fields
            var bounds: [Range<Int>] = []
            bounds.reserveCapacity(6)
            var start = 0
            for index in 0..<bytes.count where bytes[index] == UInt8(ascii: "\t") {
                bounds.append(start..<index)
                start = index + 1
            }
            bounds.append(start..<bytes.count)
            guard bounds.count == 6 else { return nil }
            func field(_ index: Int) -> UnsafeBufferPointer<UInt8> { UnsafeBufferPointer(rebasing: bytes[bounds[index]]) }
            func isNumber(_ text: UnsafeBufferPointer<UInt8>) -> Bool {
                var scanner = JSONScanner(UnsafeRawBufferPointer(text))
                return (try? scanner.readNumber()) != nil && (try? scanner.expectEnd()) != nil
            }

            var ms: Int64 = 0
            let time = field(0)
            guard !time.isEmpty, time.count <= 15 else { return nil }
            for byte in time {
                guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
                ms = ms * 10 + Int64(byte - UInt8(ascii: "0"))
            }
            let total = field(2), used = field(3)
            let hasStorage = !total.isEmpty || !used.isEmpty
            guard !hasStorage || (isNumber(total) && isNumber(used)) else { return nil }

            func raw(_ text: StaticString) { out.append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount)) }
            func string(_ text: some Sequence<UInt8>) {
                out.append(UInt8(ascii: "\""))
                for byte in text {
                    switch byte {
                    case UInt8(ascii: "\""): out.append(contentsOf: doublingBackslashes ? [92, 92, 34] : [92, 34])
                    case UInt8(ascii: "\\"): out.append(contentsOf: doublingBackslashes ? [92, 92, 92, 92] : [92, 92])
                    case 0..<0x20:
                        let hex = Array("0123456789abcdef".utf8)
                        out.append(contentsOf: doublingBackslashes ? [92, 92] : [92])
                        out.append(contentsOf: [UInt8(ascii: "u"), 48, 48, hex[Int(byte >> 4)], hex[Int(byte & 15)]])
                    default: out.append(byte)
                    }
                }
                out.append(UInt8(ascii: "\""))
            }
            raw(#"{"device_id":"#)
            string(deviceID.string.utf8)
            raw(#","timestamp":"#)
            string(UTCTimestamp(millisecondsSinceEpoch: ms).iso8601.utf8)
            if !field(1).isEmpty { raw(#","current_playlist":"#); string(field(1)) }
            if hasStorage {
                raw(#","storage_status":{"total_gb":"#)
                out.append(contentsOf: total)
                raw(#","used_gb":"#)
                out.append(contentsOf: used)
                raw("}")
            }
            if !field(4).isEmpty { raw(#","network_status":"#); string(field(4)) }
            if !field(5).isEmpty { raw(#","player_version":"#); string(field(5)) }
            raw("}")
            return ms
        }
    }
}
