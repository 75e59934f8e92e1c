import Testing

@testable import Monitor

/// The Redis outage credit as a value: probes in, credit out, no I/O.
@Suite struct OutageCreditTests {
    let start = ContinuousClock.now

    @Test func anOutageIsCreditedForOneOfflineAfterFromItsEnd() {
        var credit = OutageCredit(lasts: .seconds(600))
        credit.reached(at: start)
        credit.missed(at: start + .seconds(1))
        credit.missed(at: start + .seconds(100))
        #expect(credit.currentCredit(at: start + .seconds(100)) == .zero, "no credit while Redis is still away")
        let outage = credit.reached(at: start + .seconds(120))
        #expect(outage == .seconds(120))
        #expect(credit.currentCredit(at: start + .seconds(121)) == .seconds(120))
        #expect(credit.currentCredit(at: start + .seconds(719)) == .seconds(120))
        #expect(credit.currentCredit(at: start + .seconds(720)) == .zero)
    }

    @Test func probesThatAlwaysReachRedisGiveNothing() {
        var credit = OutageCredit(lasts: .seconds(600))
        for second in 0..<10 { #expect(credit.reached(at: start + .seconds(second)) == nil) }
        #expect(credit.currentCredit(at: start + .seconds(10)) == .zero)
    }

    @Test func aSecondOutageKeepsTheLargerCreditAndRestartsItsClock() {
        var credit = OutageCredit(lasts: .seconds(600))
        credit.reached(at: start)
        credit.missed(at: start + .seconds(1))
        credit.reached(at: start + .seconds(300))
        credit.missed(at: start + .seconds(400))
        credit.reached(at: start + .seconds(410))  // 10 s away; the 300 s credit still runs
        #expect(credit.currentCredit(at: start + .seconds(850)) == .seconds(300))
        #expect(credit.currentCredit(at: start + .seconds(1010)) == .zero)
    }

    @Test func withoutAContactBeforeTheFailuresNothingIsCredited() {
        // an instance that never reached Redis cannot tell how long it was away
        var credit = OutageCredit(lasts: .seconds(600))
        credit.missed(at: start)
        #expect(credit.reached(at: start + .seconds(5)) == nil)
        #expect(credit.currentCredit(at: start + .seconds(6)) == .zero)
    }
}
