import HeartbeatDomain
import Testing

@testable import Monitor

@Suite struct LastHeartbeatThrottleTests {
    let a = DeviceID.random()
    let b = DeviceID.random()

    private func due(_ throttle: LastHeartbeatThrottle, _ heartbeats: [(DeviceID, Int64)]) -> [DeviceID: Int64] {
        throttle.due(heartbeats)
    }

    @Test func aDeviceIsWrittenOnFirstSightThenOncePerInterval() {
        let throttle = LastHeartbeatThrottle(interval: .seconds(300))
        #expect(due(throttle, [(a, 1_000), (b, 2_000)]) == [a: 1_000, b: 2_000])
        throttle.written([a: 1_000, b: 2_000])
        // within the interval: nothing; an interval on: due again
        #expect(due(throttle, [(a, 60_000), (b, 301_999)]).isEmpty)
        #expect(due(throttle, [(a, 301_000), (b, 302_000)]) == [a: 301_000, b: 302_000])
    }

    @Test func onlyWhatWasWrittenCounts() {
        let throttle = LastHeartbeatThrottle(interval: .seconds(300))
        // a failed write is not noted: the next batch still has the device due
        #expect(due(throttle, [(a, 1_000)]) == [a: 1_000])
        #expect(due(throttle, [(a, 2_000)]) == [a: 2_000])
        throttle.written([a: 2_000])
        // an older heartbeat noted late does not move the device's time back
        throttle.written([a: 1_500])
        #expect(due(throttle, [(a, 301_999)]).isEmpty)
        #expect(due(throttle, [(a, 302_000)]) == [a: 302_000])
    }

    @Test func aDeviceTwiceInABatchIsDueWithItsNewestHeartbeat() {
        let throttle = LastHeartbeatThrottle(interval: .seconds(300))
        #expect(due(throttle, [(a, 2_000), (b, 1_000), (a, 3_000), (a, 2_500)]) == [a: 3_000, b: 1_000])
        throttle.written([a: 3_000])
        // the older beat is within the interval, the newer one is not: due with the newer
        #expect(due(throttle, [(a, 302_999), (a, 303_000), (a, 100_000)]) == [a: 303_000])
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
        #expect(due(throttle, [(b, 2_300)]) == [b: 2_300])
    }
}
