import HeartbeatDomain
import Testing

@testable import Monitor

@Suite struct LastHeartbeatThrottleTests {
    let a = DeviceID.random()
    let b = DeviceID.random()

    @Test func aDeviceIsWrittenOnFirstSightThenOncePerInterval() {
        let throttle = LastHeartbeatThrottle(interval: .seconds(300))
        #expect(throttle.due([a: 1_000, b: 2_000]) == [a: 1_000, b: 2_000])
        throttle.written([a: 1_000, b: 2_000])
        // within the interval: nothing; an interval on: due again
        #expect(throttle.due([a: 60_000, b: 301_999]).isEmpty)
        #expect(throttle.due([a: 301_000, b: 302_000]) == [a: 301_000, b: 302_000])
    }

    @Test func onlyWhatWasWrittenCounts() {
        let throttle = LastHeartbeatThrottle(interval: .seconds(300))
        // a failed write is not noted: the next batch still has the device due
        #expect(throttle.due([a: 1_000]) == [a: 1_000])
        #expect(throttle.due([a: 2_000]) == [a: 2_000])
        throttle.written([a: 2_000])
        // an older heartbeat noted late does not move the device's time back
        throttle.written([a: 1_500])
        #expect(throttle.due([a: 301_999]).isEmpty)
        #expect(throttle.due([a: 302_000]) == [a: 302_000])
    }

    @Test func devicesSilentForAnIntervalAreForgotten() {
        let throttle = LastHeartbeatThrottle(interval: .seconds(1))
        throttle.written([a: 1_000, b: 1_000])
        #expect(throttle.count == 2)
        throttle.written([a: 1_500])
        #expect(throttle.count == 2)
        // an interval after the last pruning: b, silent since 1,000, is dropped; a is kept
        throttle.written([a: 2_200])
        #expect(throttle.count == 1)
        #expect(throttle.due([b: 2_300]) == [b: 2_300])
    }
}
