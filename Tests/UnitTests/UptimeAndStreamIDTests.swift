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
        #expect(StreamConsumer.successor(of: "1700000000000-0") == "1700000000000-1")
        #expect(StreamConsumer.successor(of: "5-\(UInt64.max)") == "6-0")
        #expect(StreamConsumer.successor(of: "garbage") == nil)
        #expect(StreamConsumer.compare("10-0", "9-5") == 1)
        #expect(StreamConsumer.compare("9-5", "9-6") == -1)
        #expect(StreamConsumer.compare("9-5", "9-5") == 0)
    }
}
