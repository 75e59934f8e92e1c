import RedisAdapter
import Testing

@testable import Monitor

@Suite struct StreamIDTests {
    @Test func successorAndOrder() {
        #expect(StreamID("1700000000000-0")?.successor.description == "1700000000000-1")
        #expect(StreamID("5-\(UInt64.max)")?.successor.description == "6-0")
        #expect(StreamID("garbage") == nil)
        #expect(StreamID("10-0")! > StreamID("9-5")!)
        #expect(StreamID("9-5")! < StreamID("9-6")!)
        #expect(StreamID("9-5")! == StreamID("9-5")!)
    }
}
