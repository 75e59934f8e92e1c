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
