/// One command's delivery state, as the command log hash keeps it (field = command id, value
/// `state|deliveries|last delivered ms|state changed ms|expires ms|type`). The ops API writes
/// `queued` when it enqueues; the heartbeat script moves it to `delivered` (counting each reply it
/// rides in), `acknowledged` (listed in the device's `acked_commands`) or `expired`.
public struct CommandState: Sendable, Equatable {
    public enum State: String, Sendable {
        case queued, delivered, acknowledged, expired
    }

    public var id: String
    public var type: String
    public var state: State
    /// Replies the command was sent in (at least once delivery: may exceed one).
    public var deliveries: Int
    public var lastDeliveredAtMs: Int64?
    /// When it was acknowledged or found expired.
    public var settledAtMs: Int64?
    public var expiresAtMs: Int64

    public init(id: String, type: String, state: State, deliveries: Int, lastDeliveredAtMs: Int64?, settledAtMs: Int64?, expiresAtMs: Int64) {
        self.id = id
        self.type = type
        self.state = state
        self.deliveries = deliveries
        self.lastDeliveredAtMs = lastDeliveredAtMs
        self.settledAtMs = settledAtMs
        self.expiresAtMs = expiresAtMs
    }

    /// The log value of a newly queued command.
    public static func queuedValue(expiresAtMs: Int64, type: String) -> String { "queued|0|0|0|\(expiresAtMs)|\(type)" }

    /// Parses a log entry; `nowMs` turns a queued or delivered command past its expiry into
    /// `expired` (the script only notices on the device's next heartbeat).
    public init?(id: String, logValue: String, nowMs: Int64) {
        let parts = logValue.split(separator: "|", maxSplits: 5, omittingEmptySubsequences: false)
        guard parts.count == 6, let state = State(rawValue: String(parts[0])), let deliveries = Int(parts[1]),
            let last = Int64(parts[2]), let settled = Int64(parts[3]), let expires = Int64(parts[4])
        else { return nil }
        let lapsed = (state == .queued || state == .delivered) && expires <= nowMs
        self.init(
            id: id, type: String(parts[5]), state: lapsed ? .expired : state, deliveries: deliveries,
            lastDeliveredAtMs: last > 0 ? last : nil, settledAtMs: settled > 0 ? settled : (lapsed ? expires : nil),
            expiresAtMs: expires)
    }
}
