/// The protection against false offline storms (DESIGN.md), as a value-type state machine.
///
/// When one scan would take at least `minDevices` devices and more than `fraction` of the online
/// fleet offline, the problem is almost surely ours (ingest or network down): the scan is held,
/// one fleet-level alert raised, and the question asked again next scan. The hold ends when the
/// stale share falls back under the threshold, when an operator releases it, or after `maxHold`
/// (then the devices still silent are declared offline, late but not lost).
struct StormGuard: Sendable, Equatable {
    struct Settings: Sendable, Equatable {
        var minDevices: Int
        var fraction: Double
        var maxHold: Duration
    }

    enum HoldEnd: String, Sendable, Equatable {
        case recovered, released, expired
    }

    enum Decision: Sendable, Equatable {
        /// Declare the stale devices offline.
        case proceed
        /// Declare nothing; `started` is true on the scan that tripped the guard (raise the alert then).
        case hold(devices: Int, started: Bool)
        /// A hold ended; declare whatever is stale now.
        case proceedAfterHold(HoldEnd)
    }

    let settings: Settings
    /// Redis time (ms) when the current hold began; `nil` when not holding.
    private(set) var holdingSince: Int64?
    private var releaseRequested = false

    init(settings: Settings) {
        self.settings = settings
    }

    var isHolding: Bool { holdingSince != nil }

    /// An operator's release: the next scan proceeds. Returns false when nothing is held.
    mutating func requestRelease() -> Bool {
        guard holdingSince != nil else { return false }
        releaseRequested = true
        return true
    }

    /// Whether `stale` of `online` devices (stale included) looks like a storm.
    func isStorm(stale: Int, online: Int) -> Bool {
        stale >= settings.minDevices && Double(stale) > settings.fraction * Double(online)
    }

    /// Decides what a scan that found `stale` of `online` devices silent may do, at Redis time `now` (ms).
    mutating func decide(stale: Int, online: Int, nowMs now: Int64) -> Decision {
        let storm = isStorm(stale: stale, online: online)
        if let since = holdingSince {
            let end: HoldEnd? =
                if releaseRequested { .released }
                else if !storm { .recovered }
                else if now - since >= settings.maxHold.milliseconds { .expired }
                else { nil }
            guard let end else { return .hold(devices: stale, started: false) }
            holdingSince = nil
            releaseRequested = false
            return .proceedAfterHold(end)
        }
        guard storm else { return .proceed }
        holdingSince = now
        return .hold(devices: stale, started: true)
    }
}

extension Duration {
    /// Whole milliseconds.
    var milliseconds: Int64 {
        components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    }
}
