import HeartbeatDomain

/// Share of a window a device was online, from its status changes.
enum UptimeCalculator {
    struct Change: Equatable {
        var status: DeviceStatus
        var atMs: Int64
    }

    /// Milliseconds online within `[fromMs, toMs)`. `changes` are in time order; the first may lie
    /// before the window (the status the window starts with).
    static func onlineMilliseconds(changes: [Change], fromMs: Int64, toMs: Int64) -> Int64 {
        var online: Int64 = 0
        var current: DeviceStatus = .unknown
        var since = fromMs
        for change in changes {
            let at = min(max(change.atMs, fromMs), toMs)
            if current == .online { online += at - since }
            current = change.status
            since = at
        }
        if current == .online { online += toMs - since }
        return online
    }
}
