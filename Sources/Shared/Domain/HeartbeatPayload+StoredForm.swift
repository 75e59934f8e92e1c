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

    /// Reads a payload back from ``storedForm``; `nil` when `stored` is not one.
    public init?(storedForm stored: String, deviceID: DeviceID) {
        var stored = stored
        guard
            let payload = stored.withUTF8({ bytes -> HeartbeatPayload? in
                guard let form = StoredFields(bytes) else { return nil }
                func text(_ index: Int) -> String? { form.isEmpty(index) ? nil : String(decoding: form[index], as: UTF8.self) }
                var storage: StorageStatus?
                if form.hasStorage {
                    // the grammar is checked by StoredFields, so these parse
                    guard let total = Double(text(2) ?? ""), let used = Double(text(3) ?? "") else { return nil }
                    storage = StorageStatus(totalGB: total, usedGB: used)
                }
                return HeartbeatPayload(
                    deviceID: deviceID, deviceTime: UTCTimestamp(millisecondsSinceEpoch: form.deviceTimeMs), currentPlaylist: text(1),
                    storage: storage, networkStatus: text(4), playerVersion: text(5))
            })
        else { return nil }
        self = payload
    }
}

/// The six fields of a ``HeartbeatPayload/storedForm`` as byte ranges, checked once for both
/// readers (the payload initializer and the history writer's JSON writer): a device time of
/// digits, and storage figures that are both absent or both JSON numbers. Points into the bytes it
/// was made from: use it only inside the `withUTF8` call that produced them.
private struct StoredFields {
    let bytes: UnsafeBufferPointer<UInt8>
    private let bounds: [Range<Int>]
    let deviceTimeMs: Int64
    var hasStorage: Bool { !isEmpty(2) || !isEmpty(3) }

    init?(_ bytes: UnsafeBufferPointer<UInt8>) {
        var bounds: [Range<Int>] = []
        bounds.reserveCapacity(6)
        var start = 0
        for index in 0..<bytes.count where bytes[index] == UInt8(ascii: "\t") {
            bounds.append(start..<index)
            start = index + 1
        }
        bounds.append(start..<bytes.count)
        guard bounds.count == 6 else { return nil }
        self.bytes = bytes
        self.bounds = bounds

        var ms: Int64 = 0
        let time = bytes[bounds[0]]
        guard !time.isEmpty, time.count <= 15 else { return nil }
        for byte in time {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            ms = ms * 10 + Int64(byte - UInt8(ascii: "0"))
        }
        deviceTimeMs = ms
        func isNumber(_ index: Int) -> Bool {
            var scanner = JSONScanner(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: bytes[bounds[index]])))
            return (try? scanner.readNumber()) != nil && (try? scanner.expectEnd()) != nil
        }
        guard !hasStorage || (isNumber(2) && isNumber(3)) else { return nil }
    }

    subscript(index: Int) -> UnsafeBufferPointer<UInt8> { UnsafeBufferPointer(rebasing: bytes[bounds[index]]) }
    func isEmpty(_ index: Int) -> Bool { bounds[index].isEmpty }
}

extension HeartbeatPayload {
    /// Appends the JSON of a payload in ``storedForm`` straight from its bytes, for the history
    /// writer's hot loop: no intermediate payload or strings. The one JSON writer of a payload
    /// (``json`` goes through it too).
    /// With `doublingBackslashes`, every `\` is written twice (PostgreSQL's `COPY` text format).
    ///
    /// - Returns: the device time (ms), or `nil` when `stored` is not a valid stored form
    ///   (nothing is appended then).
    public static func appendJSON(
        ofStoredForm stored: String, deviceID: DeviceID, to out: inout [UInt8], doublingBackslashes: Bool
    ) -> Int64? {
        var stored = stored
        return stored.withUTF8 { bytes -> Int64? in
            guard let form = StoredFields(bytes) else { return nil }
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
            string(UTCTimestamp(millisecondsSinceEpoch: form.deviceTimeMs).iso8601.utf8)
            if !form.isEmpty(1) {
                raw(#","current_playlist":"#)
                string(form[1])
            }
            if form.hasStorage {
                raw(#","storage_status":{"total_gb":"#)
                out.append(contentsOf: form[2])
                raw(#","used_gb":"#)
                out.append(contentsOf: form[3])
                raw("}")
            }
            if !form.isEmpty(4) {
                raw(#","network_status":"#)
                string(form[4])
            }
            if !form.isEmpty(5) {
                raw(#","player_version":"#)
                string(form[5])
            }
            raw("}")
            return form.deviceTimeMs
        }
    }
}

extension HeartbeatPayload {
    /// The payload as compact JSON in the wire field names, as the ops API and the history serve it.
    /// Always valid JSON, whatever the strings contain.
    public var json: String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(256)
        _ = Self.appendJSON(ofStoredForm: storedForm, deviceID: deviceID, to: &bytes, doublingBackslashes: false)
        return String(decoding: bytes, as: UTF8.self)
    }
}
