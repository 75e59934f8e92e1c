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

    @Test func fieldsAreLookedUpByNameWhateverTheirOrder() {
        let entries: RedisValue = .array([
            .array([.string("5-1"), .array([.string("b"), .string("2"), .string("a"), .string("1"), .string("dangling")])])
        ])
        let fields = StreamEntry.list(entries).first?.fields
        #expect(fields?["a"] == "1")
        #expect(fields?["b"] == "2")
        #expect(fields?["dangling"] == nil)
        #expect(fields == ["a": "1", "b": "2"])
        #expect(fields != ["a": "1", "b": "3"])
        #expect(fields != ["a": "1"])
    }
}
