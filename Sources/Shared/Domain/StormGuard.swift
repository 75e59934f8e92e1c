/// The protection against false offline storms (DESIGN.md), as a value-type state machine.
///
/// When one scan would take at least `minDevices` devices and more than `fraction` of the online
/// fleet offline, the problem is almost surely ours (ingest or network down): the scan is held,
/// one fleet-level alert raised, and the question asked again next scan. The hold ends when the
/// stale share falls back under the threshold, when an operator releases it, or after `maxHold`
/// (then the devices still silent are declared offline, late but not lost).
///
/// A storm that arrives over several scans (devices beating every few minutes fall silent a slice
/// at a time) is judged over a window: devices declared offline within the last `window` count as
/// stale again, against the fleet as it was at the window's start.
public struct StormGuard: Sendable, Equatable {
    public struct Settings: Sendable, Equatable {
        public var minDevices: Int
        public var fraction: Double
        public var maxHold: Duration

        public init(minDevices: Int, fraction: Double, maxHold: Duration) {
            self.minDevices = minDevices
            self.fraction = fraction
            self.maxHold = maxHold
        }
    }

    public enum HoldEnd: String, Sendable, Equatable {
        case recovered, released, expired
    }

    public enum Decision: Sendable, Equatable {
        /// Declare the stale devices offline.
        case proceed
        /// Declare nothing; `started` is true on the scan that tripped the guard (raise the alert then).
        case hold(devices: Int, started: Bool)
        /// A hold ended; declare whatever is stale now.
        case proceedAfterHold(HoldEnd)
    }

    public struct Declared: Sendable, Equatable {
        public var atMs: Int64
        public var count: Int
    }

    public let settings: Settings
    /// How far back declared-offline devices still count (the offline threshold).
    public let window: Duration
    /// Redis time (ms) when the current hold began; `nil` when not holding.
    public private(set) var holdingSince: Int64?
    /// Devices the last scan held back (0 when not holding).
    public private(set) var heldDevices = 0
    private var releaseRequested = false
    private var recent: [Declared] = []

    public init(settings: Settings, window: Duration = .zero) {
        self.settings = settings
        self.window = window
    }

    /// Records devices a scan declared offline, so the next scans see them within the window.
    public mutating func recordDeclared(_ count: Int, nowMs: Int64) {
        guard count > 0 else { return }
        recent.append(Declared(atMs: nowMs, count: count))
    }

    private mutating func declaredWithinWindow(nowMs: Int64) -> Int {
        recent.removeAll { nowMs - $0.atMs > window.milliseconds }
        return recent.reduce(0) { $0 + $1.count }
    }

    public var isHolding: Bool { holdingSince != nil }

    /// An operator's release: the next scan proceeds. Returns false when nothing is held.
    public mutating func requestRelease() -> Bool {
        guard holdingSince != nil else { return false }
        releaseRequested = true
        return true
    }

    /// Whether `stale` of `online` devices (stale included) looks like a storm.
    public func isStorm(stale: Int, online: Int) -> Bool {
        stale >= settings.minDevices && Double(stale) > settings.fraction * Double(online)
    }

    /// Decides what a scan that found `stale` of `online` devices silent may do, at Redis time `now` (ms).
    public mutating func decide(stale: Int, online: Int, nowMs now: Int64) -> Decision {
        let declared = declaredWithinWindow(nowMs: now)
        let storm = isStorm(stale: stale + declared, online: online + declared)
        if let since = holdingSince {
            let end: HoldEnd? =
                if releaseRequested { .released } else if !storm { .recovered } else if now - since >= settings.maxHold.milliseconds { .expired } else
                { nil }
            guard let end else {
                heldDevices = stale
                return .hold(devices: stale, started: false)
            }
            holdingSince = nil
            heldDevices = 0
            releaseRequested = false
            recent = []  // the storm has been adjudicated; what follows is judged afresh
            return .proceedAfterHold(end)
        }
        guard storm else { return .proceed }
        holdingSince = now
        heldDevices = stale
        return .hold(devices: stale, started: true)
    }
}
