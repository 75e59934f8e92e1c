import HeartbeatDomain
import Testing

@testable import Monitor

@Suite struct StormGuardTests {
    var guardian = StormGuard(settings: .init(minDevices: 50, fraction: 0.5, maxHold: .seconds(900)))

    @Test mutating func ordinaryScansProceed() {
        #expect(guardian.decide(stale: 0, online: 1000, nowMs: 0) == .proceed)
        #expect(guardian.decide(stale: 400, online: 1000, nowMs: 1) == .proceed)  // many, but under half
        #expect(guardian.decide(stale: 49, online: 50, nowMs: 2) == .proceed)  // most, but under the minimum
        #expect(!guardian.isHolding)
    }

    @Test mutating func aStormIsHeldAndAlertedOnce() {
        #expect(guardian.decide(stale: 600, online: 1000, nowMs: 0) == .hold(devices: 600, started: true))
        #expect(guardian.decide(stale: 700, online: 1000, nowMs: 60_000) == .hold(devices: 700, started: false))
        #expect(guardian.isHolding)
    }

    @Test mutating func theHoldEndsWhenTheFleetRecovers() {
        _ = guardian.decide(stale: 600, online: 1000, nowMs: 0)
        #expect(guardian.decide(stale: 30, online: 1000, nowMs: 60_000) == .proceedAfterHold(.recovered))
        #expect(guardian.decide(stale: 30, online: 1000, nowMs: 120_000) == .proceed)
    }

    @Test mutating func anOperatorReleasesTheHold() {
        let releasedIdle = guardian.requestRelease()
        #expect(!releasedIdle)  // nothing held
        _ = guardian.decide(stale: 600, online: 1000, nowMs: 0)
        let released = guardian.requestRelease()
        #expect(released)
        #expect(guardian.decide(stale: 600, online: 1000, nowMs: 60_000) == .proceedAfterHold(.released))
        #expect(!guardian.isHolding)
    }

    @Test mutating func theHoldExpiresSoARealPowerCutIsReportedLate() {
        _ = guardian.decide(stale: 600, online: 1000, nowMs: 0)
        #expect(guardian.decide(stale: 600, online: 1000, nowMs: 899_999) == .hold(devices: 600, started: false))
        #expect(guardian.decide(stale: 600, online: 1000, nowMs: 900_000) == .proceedAfterHold(.expired))
        // a new storm afterwards trips again
        #expect(guardian.decide(stale: 600, online: 600, nowMs: 960_000) == .hold(devices: 600, started: true))
    }

    @Test func thresholdIsStrictlyMoreThanTheFraction() {
        let g = StormGuard(settings: .init(minDevices: 1, fraction: 0.5, maxHold: .seconds(1)))
        #expect(!g.isStorm(stale: 50, online: 100))
        #expect(g.isStorm(stale: 51, online: 100))
        #expect(!StormGuard(settings: .init(minDevices: 1, fraction: 1, maxHold: .seconds(1))).isStorm(stale: 10, online: 10))
    }
}
