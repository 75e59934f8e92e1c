import Testing

@testable import Monitor

/// The leader loop's schedule and its log of failures, without a clock of its own.
@Suite struct LeaderLoopTests {
    @Test func aNewLeaseRunsAtOnceOtherwiseEveryInterval() {
        let leadership = Leadership()
        var schedule = LeaderLoop.Schedule(interval: .seconds(60))
        let start = ContinuousClock.now
        let first = leadership.grant(.init(connection: nil, backendPID: 0))
        #expect(schedule.isDue(first, now: start))
        #expect(!schedule.isDue(first, now: start + .seconds(30)))
        #expect(schedule.isDue(first, now: start + .seconds(60)))
        // a failover: the next lease (another epoch) does not wait for the interval
        let second = leadership.grant(.init(connection: nil, backendPID: 1))
        #expect(schedule.isDue(second, now: start + .seconds(61)))
        #expect(!schedule.isDue(second, now: start + .seconds(62)))
    }

    @Test func aRepeatedErrorIsLoggedOncePerQuietPeriod() {
        var log = LeaderLoop.FailureLog(quietPeriod: .seconds(10))
        let start = ContinuousClock.now
        #expect(log.shouldLog("Redis unavailable", now: start) == 0)
        #expect(log.shouldLog("Redis unavailable", now: start + .seconds(1)) == nil)
        #expect(log.shouldLog("Redis unavailable", now: start + .seconds(2)) == nil)
        #expect(log.shouldLog("PostgreSQL gone", now: start + .seconds(3)) == 2)
        #expect(log.shouldLog("PostgreSQL gone", now: start + .seconds(14)) == 0)
        #expect(log.recovered() == 5)
        #expect(log.recovered() == nil)
    }
}
