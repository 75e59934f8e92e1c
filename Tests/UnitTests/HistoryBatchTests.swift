import Configuration
import HeartbeatDomain
import PostgresAdapter
import RedisAdapter
import ServerSupport
import Testing

@testable import Monitor

@Suite struct HistoryBatchTests {
    @Test func rowsAreCOPYTextWithBackslashesDoubledAndBadEntriesCounted() throws {
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
        let text = String(decoding: batch.data, as: UTF8.self)
        #expect(
            text == "\(id.string)\t2026-02-02T10:30:01.234Z\t"
                + #"{"device_id":"3f2c1a9e-8d4b-4f6a-9c7e-1b2d3e4f5a6b","timestamp":"2026-02-02T10:30:00.000Z","player_version":"a\\\\b\\"c"}"#
                + "\t2026-02-02T10:30:00.000Z\t7:1-0\n")
        #expect(batch.newestPerDevice == [id: 1_770_028_201_234])
        // JSON is not a stored form
        let json = HistoryBatch(entries: [StreamEntry(id: "1-0", fields: ["d": id.string, "t": "1770028201234", "p": payload.json])], bucket: 7)
        #expect(json.unreadable == 1 && json.isEmpty)
    }
}
