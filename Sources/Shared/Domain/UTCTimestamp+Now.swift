import Foundation

extension UTCTimestamp {
    /// The local clock, ms since the epoch (for the ops API's defaults; liveness uses Redis's clock).
    public static var nowMs: Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// The local clock.
    public static var now: UTCTimestamp { UTCTimestamp(millisecondsSinceEpoch: nowMs) }
}
