import HeartbeatDomain
import Testing

@testable import Monitor

@Suite struct StormGuardWindowTests {
    @Test func aStormArrivingSliceBySliceStillTrips() {
        // devices beating every 5 min fall silent a fifth per scan; each slice alone is under half
        var g = StormGuard(settings: .init(minDevices: 50, fraction: 0.5, maxHold: .seconds(900)), window: .seconds(600))
        var online = 1000
        var minute: Int64 = 0
        var tripped = false
        for _ in 0..<5 where !tripped {
            let stale = 200
            switch g.decide(stale: stale, online: online, nowMs: minute * 60_000) {
            case .proceed:
                g.recordDeclared(stale, nowMs: minute * 60_000)
                online -= stale
            case .hold(_, let started):
                #expect(started)
                tripped = true
            case .proceedAfterHold:
                Issue.record("no hold to end")
            }
            minute += 1
        }
        #expect(tripped)
        #expect(online >= 600, "at most two slices got through before the guard tripped: \(online) left")
    }

    @Test func declaredDevicesLeaveTheWindow() {
        var g = StormGuard(settings: .init(minDevices: 50, fraction: 0.5, maxHold: .seconds(900)), window: .seconds(600))
        g.recordDeclared(450, nowMs: 0)
        #expect(g.decide(stale: 100, online: 550, nowMs: 60_000) == .hold(devices: 100, started: true))
        var later = StormGuard(settings: .init(minDevices: 50, fraction: 0.5, maxHold: .seconds(900)), window: .seconds(600))
        later.recordDeclared(450, nowMs: 0)
        #expect(later.decide(stale: 100, online: 550, nowMs: 700_000) == .proceed)
    }
}
