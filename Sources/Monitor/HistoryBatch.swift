import HeartbeatDomain
import RedisAdapter

/// A batch of history stream entries as rows in PostgreSQL's `COPY` text format.
///
/// `COPY` skips what `INSERT … SELECT FROM unnest(…)` costs per row (array parsing, the executor's
/// projection); the JSON column is written as the ops API serves it.
struct HistoryBatch {
    /// The rows: device id, received at, payload JSON, device time, entry id; tab-separated, one per line.
    private(set) var data: [UInt8] = []
    /// Redis time (ms) of each row, for creating missing day partitions.
    private(set) var receivedAt: [Int64] = []
    /// Entries that are not a device id, a time and a stored payload.
    private(set) var unreadable = 0
    /// The newest heartbeat (Redis ms) of each device in the batch.
    private(set) var newestPerDevice: [DeviceID: Int64] = [:]

    var isEmpty: Bool { receivedAt.isEmpty }

    /// The stream's bucket, for the rows' entry ids.
    let bucket: Int

    init(entries: [StreamEntry], bucket: Int) {
        self.bucket = bucket
        data.reserveCapacity(entries.count * 300)
        receivedAt.reserveCapacity(entries.count)
        for entry in entries { append(entry) }
    }

    private static func raise(_ value: inout Int64, to newer: Int64) {
        if value < newer { value = newer }
    }

    private mutating func append(_ entry: StreamEntry) {
        guard let device = entry.fields[KeySchema.HistoryField.device].flatMap({ DeviceID($0) }),
            let at = entry.fields[KeySchema.HistoryField.receivedAt].flatMap({ Int64($0) }),
            let stored = entry.fields[KeySchema.HistoryField.payload]
        else {
            unreadable += 1
            return
        }
        let rowStart = data.count
        data.append(contentsOf: device.string.utf8)
        data.append(UInt8(ascii: "\t"))
        data.append(contentsOf: UTCTimestamp(millisecondsSinceEpoch: at).iso8601.utf8)
        data.append(UInt8(ascii: "\t"))
        guard let deviceTime = HeartbeatPayload.appendJSON(ofStoredForm: stored, deviceID: device, to: &data, doublingBackslashes: true) else {
            data.removeSubrange(rowStart...)
            unreadable += 1
            return
        }
        data.append(UInt8(ascii: "\t"))
        data.append(contentsOf: UTCTimestamp(millisecondsSinceEpoch: deviceTime).iso8601.utf8)
        data.append(UInt8(ascii: "\t"))
        data.append(contentsOf: String(bucket).utf8)
        data.append(UInt8(ascii: ":"))
        data.append(contentsOf: entry.id.utf8)
        data.append(UInt8(ascii: "\n"))
        receivedAt.append(at)
        Self.raise(&newestPerDevice[device, default: at], to: at)  // one lookup
    }
}
