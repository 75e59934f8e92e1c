import Testing

@testable import Monitor
import RedisAdapter

@Suite struct UptimeCalculatorTests {
    typealias Change = UptimeCalculator.Change

    @Test func countsOnlineTimeInsideTheWindowOnly() {
        // online before the window, offline at 30, online again at 60, window [10, 100)
        let changes = [Change(status: .online, atMs: 0), Change(status: .offline, atMs: 30), Change(status: .online, atMs: 60)]
        #expect(UptimeCalculator.onlineMilliseconds(changes: changes, fromMs: 10, toMs: 100) == 20 + 40)
    }

    @Test func noEventsMeansNeverOnline() {
        #expect(UptimeCalculator.onlineMilliseconds(changes: [], fromMs: 0, toMs: 100) == 0)
    }

    @Test func onlineThroughoutIsTheWholeWindow() {
        #expect(UptimeCalculator.onlineMilliseconds(changes: [Change(status: .online, atMs: -5)], fromMs: 0, toMs: 100) == 100)
    }

    @Test func wentOfflineBeforeTheWindow() {
        let changes = [Change(status: .offline, atMs: -1)]
        #expect(UptimeCalculator.onlineMilliseconds(changes: changes, fromMs: 0, toMs: 100) == 0)
    }
}

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
