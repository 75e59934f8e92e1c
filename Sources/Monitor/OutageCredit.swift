/// Time Redis was out of reach is not silence: the gateways answered `503` and the devices kept
/// trying. After an outage of `d`, the scanner gives every device `d` more than `OFFLINE_AFTER`
/// for one `OFFLINE_AFTER` (after that, every device has had a full `OFFLINE_AFTER` of reachable
/// Redis to beat in). A value type fed with the leader elector's Redis probes; tested without I/O.
struct OutageCredit: Sendable, Equatable {
    /// How long the credit lasts after Redis is back.
    let lasts: Duration
    private(set) var lastReached: ContinuousClock.Instant?
    private(set) var unreachableSince: ContinuousClock.Instant?
    private(set) var credit: Duration = .zero
    private(set) var creditUntil: ContinuousClock.Instant?

    init(lasts: Duration) {
        self.lasts = lasts
    }

    /// A probe reached Redis at `now`. Returns the outage it ended, if any.
    @discardableResult
    mutating func reached(at now: ContinuousClock.Instant) -> Duration? {
        defer {
            lastReached = now
            unreachableSince = nil
        }
        guard unreachableSince != nil, let lastReached else { return nil }
        // from the last contact before the failures: the outage is overestimated by at most one probe interval
        let outage = now - lastReached
        credit = max(outage, currentCredit(at: now))
        creditUntil = now + lasts
        return outage
    }

    /// A probe failed at `now`.
    mutating func missed(at now: ContinuousClock.Instant) {
        if unreachableSince == nil { unreachableSince = now }
    }

    /// True between a failed probe and the next one that reaches Redis: the outage is not over as
    /// far as the probes know, so its length (the credit) is not known yet either.
    var isOngoing: Bool { unreachableSince != nil }

    /// What the scanner adds to `OFFLINE_AFTER` at `now`.
    func currentCredit(at now: ContinuousClock.Instant) -> Duration {
        guard let creditUntil, now < creditUntil else { return .zero }
        return credit
    }
}
