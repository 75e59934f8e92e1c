import Testing

@testable import Monitor

/// The leader loop's schedule and its log of failures, without a clock of its own.
@Suite struct LeaderLoopTests {
    @Test func aNewLeaseRunsAtOnceOtherwiseEveryInterval() {
        let leadership = Leadership()
        var schedule = LeaderLoop.Schedule(interval: .seconds(60))
        let start = ContinuousClock.now
        let first = leadership.grant(.init(backendPID: 0))
        var due: [Bool] = []
        for seconds in [0, 30, 60] { due.append(schedule.isDue(first, now: start + .seconds(seconds))) }
        // a failover: the next lease (another epoch) does not wait for the interval
        let second = leadership.grant(.init(backendPID: 1))
        for seconds in [61, 62] { due.append(schedule.isDue(second, now: start + .seconds(seconds))) }
        #expect(due == [true, false, true, true, false])
    }

    @Test func aLoopThatWaitsForItsFirstRoundDoesNotRunAtANewLease() {
        let leadership = Leadership()
        var schedule = LeaderLoop.Schedule(interval: .seconds(300), runsAtNewLease: false)
        let start = ContinuousClock.now
        let lease = leadership.grant(.init(backendPID: 0))
        var due: [Bool] = []
        for seconds in [0, 299, 300, 301] { due.append(schedule.isDue(lease, now: start + .seconds(seconds))) }
        #expect(due == [false, false, true, false])
    }

    @Test func aRepeatedErrorIsLoggedOncePerQuietPeriod() {
        var log = LeaderLoop.FailureLog(quietPeriod: .seconds(10))
        let start = ContinuousClock.now
        var logged: [Int?] = []
        for (message, seconds) in [
            ("Redis unavailable", 0), ("Redis unavailable", 1), ("Redis unavailable", 2), ("PostgreSQL gone", 3), ("PostgreSQL gone", 14),
        ] {
            logged.append(log.shouldLog(message, now: start + .seconds(seconds)))
        }
        // nil: not logged; a number: logged, with how many repeats went unlogged before it
        #expect(logged == [0, nil, nil, 2, 0])
        let failedRounds = log.recovered()
        let again = log.recovered()
        #expect(failedRounds == 5 && again == nil)
    }
}
