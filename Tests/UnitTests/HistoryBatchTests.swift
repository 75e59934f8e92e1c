import Configuration
import HeartbeatDomain
import PostgresAdapter
import RedisAdapter
import ServerSupport
import Testing

@testable import Monitor

@Suite struct HistoryBatchTests {
    /// The tuples of a binary `COPY` stream, each field's bytes (`nil` for NULL); nil when the
    /// header or trailer is wrong.
    static func tuples(_ data: [UInt8]) -> [[[UInt8]?]]? {
        var at = 0
        func int(_ size: Int) -> Int64? {
            guard at + size <= data.count else { return nil }
            defer { at += size }
            return data[at..<at + size].reduce(Int64(0)) { $0 << 8 | Int64($1) }
        }
        guard data.count >= 21, Array(data[0..<11]) == Array("PGCOPY\n".utf8) + [0xFF, 0x0D, 0x0A, 0x00] else { return nil }
        at = 11
        guard int(4) == 0, int(4) == 0 else { return nil }
        var tuples: [[[UInt8]?]] = []
        while let count = int(2) {
            if count == 0xFFFF { return at == data.count ? tuples : nil }  // the trailer, -1
            var fields: [[UInt8]?] = []
            for _ in 0..<count {
                guard let length = int(4) else { return nil }
                if length == 0xFFFF_FFFF {
                    fields.append(nil)
                    continue
                }
                guard at + Int(length) <= data.count else { return nil }
                fields.append(Array(data[at..<at + Int(length)]))
                at += Int(length)
            }
            tuples.append(fields)
        }
        return nil
    }

    static func int64(_ bytes: [UInt8]?) -> Int64? {
        guard let bytes, bytes.count == 8 else { return nil }
        return Int64(bitPattern: bytes.reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
    }

    @Test func rowsAreBinaryCOPYTuplesAndBadEntriesCounted() throws {
        let id = DeviceID("3f2c1a9e-8d4b-4f6a-9c7e-1b2d3e4f5a6b")!
        let payload = HeartbeatPayload(deviceID: id, deviceTime: UTCTimestamp(millisecondsSinceEpoch: 1_770_028_200_000), playerVersion: "a\\b\"c")
        let entries = [
            StreamEntry(id: "1-0", fields: ["d": id.string, "t": "1770028201234", "p": payload.storedForm]),
            StreamEntry(id: "2-0", fields: ["d": "not-a-uuid", "t": "1", "p": payload.storedForm]),
            StreamEntry(id: "3-0", fields: ["d": id.string, "t": "1770028201234", "p": "garbage"]),
        ]
        let batch = HistoryBatch(entries: entries, bucket: 7)
        #expect(batch.unreadable == 2)
        #expect(batch.receivedAt == [1_770_028_201_234])
        let tuples = try #require(Self.tuples(batch.data))
        #expect(tuples.count == 1)
        let row = try #require(tuples.first)
        #expect(row.count == 5)
        #expect(row[0] == [0x3F, 0x2C, 0x1A, 0x9E, 0x8D, 0x4B, 0x4F, 0x6A, 0x9C, 0x7E, 0x1B, 0x2D, 0x3E, 0x4F, 0x5A, 0x6B])
        // microseconds since 2000-01-01 UTC
        #expect(Self.int64(row[1]) == Int64(1_770_028_201_234 - 946_684_800_000) * 1000)
        #expect(row[2]?.first == 1)  // jsonb version
        #expect(
            row[2].map { String(decoding: $0.dropFirst(), as: UTF8.self) }
                == #"{"device_id":"3f2c1a9e-8d4b-4f6a-9c7e-1b2d3e4f5a6b","timestamp":"2026-02-02T10:30:00.000Z","player_version":"a\\b\"c"}"#)
        #expect(Self.int64(row[3]) == Int64(1_770_028_200_000 - 946_684_800_000) * 1000)
        #expect(row[4] == Array("7:1-0".utf8))
        #expect(batch.devices == [id])
        // JSON is not a stored form; an empty batch is still a whole stream
        let json = HistoryBatch(entries: [StreamEntry(id: "1-0", fields: ["d": id.string, "t": "1770028201234", "p": payload.json])], bucket: 7)
        #expect(json.unreadable == 1 && json.isEmpty)
        #expect(Self.tuples(json.data)?.isEmpty == true)
    }
}
