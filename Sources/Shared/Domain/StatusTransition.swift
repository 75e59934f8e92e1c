/// A change of a device's liveness, as recorded in a bucket's `transitions` stream.
///
/// The gateway writes `online` transitions (a heartbeat from a device not in the online set); the
/// monitor's offline scanner writes `offline` ones. Times are Redis `TIME`, in milliseconds.
public struct StatusTransition: Sendable, Hashable {
    public enum Kind: String, Sendable, Codable {
        case online
        case offline
    }

    public var deviceID: DeviceID
    public var kind: Kind
    /// When the transition happened (Redis time).
    public var at: UTCTimestamp
    /// The device's last heartbeat when the transition was recorded (Redis time).
    public var lastHeartbeat: UTCTimestamp

    public init(deviceID: DeviceID, kind: Kind, at: UTCTimestamp, lastHeartbeat: UTCTimestamp) {
        self.deviceID = deviceID
        self.kind = kind
        self.at = at
        self.lastHeartbeat = lastHeartbeat
    }

    /// Stream field names, shared by the Lua scripts that write entries and the code that reads them.
    public enum Field {
        public static let device = "device"
        public static let kind = "type"
        public static let at = "at"
        public static let lastHeartbeat = "last_heartbeat"
    }

    /// Rebuilds a transition from a stream entry's field/value pairs; `nil` when a field is missing or malformed.
    public init?(fields: [String: String]) {
        self.init { fields[$0] }
    }

    /// Rebuilds a transition from a stream entry's fields, looked up by name with `field`.
    public init?(field: (String) -> String?) {
        guard let device = field(Field.device).flatMap({ DeviceID($0) }),
            let kind = field(Field.kind).flatMap(Kind.init(rawValue:)),
            let at = field(Field.at).flatMap(Int64.init),
            let last = field(Field.lastHeartbeat).flatMap(Int64.init)
        else { return nil }
        self.init(
            deviceID: device, kind: kind, at: .init(millisecondsSinceEpoch: at),
            lastHeartbeat: .init(millisecondsSinceEpoch: last))
    }
}
