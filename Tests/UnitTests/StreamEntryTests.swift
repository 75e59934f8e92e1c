import Configuration
import HeartbeatDomain
import PostgresAdapter
import RedisAdapter
import ServerSupport
import Testing

@testable import Monitor

@Suite struct StreamEntryTests {
    @Test func parsesEntryLists() {
        let entries: RedisValue = .array([.array([.string("5-1"), .array([.string("a"), .string("1"), .string("b"), .string("2")])])])
        #expect(StreamEntry.list(entries) == [StreamEntry(id: "5-1", fields: ["a": "1", "b": "2"])])
        #expect(StreamEntry.list(.null).isEmpty)
    }
}
