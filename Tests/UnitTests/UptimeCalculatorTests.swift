import RedisAdapter
import Testing

@testable import Monitor

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
