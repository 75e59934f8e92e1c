/// A validated heartbeat body, as a device sends it:
///
/// ```json
/// {"device_id":"uuid","timestamp":"2026-02-02T10:30:00Z","current_playlist":"playlist-uuid",
///  "storage_status":{"total_gb":64,"used_gb":32},"network_status":"connected","player_version":"1.2.3"}
/// ```
///
/// Only `device_id` and `timestamp` are required; unknown fields are ignored.
/// Build one with ``decode(json:)``, which applies every validation rule.
public struct HeartbeatPayload: Sendable, Equatable {
    public struct StorageStatus: Sendable, Equatable {
        public var totalGB: Double
        public var usedGB: Double

        public init(totalGB: Double, usedGB: Double) {
            self.totalGB = totalGB
            self.usedGB = usedGB
        }
    }

    public var deviceID: DeviceID
    /// The device's own clock; stored for skew reporting, never used for liveness.
    public var deviceTime: UTCTimestamp
    public var currentPlaylist: String?
    public var storage: StorageStatus?
    public var networkStatus: String?
    public var playerVersion: String?
    /// Ids of commands the device has received and acts on (`acked_commands`); they are no longer
    /// sent. Not part of the stored payload.
    public var ackedCommands: [String]

    public init(
        deviceID: DeviceID, deviceTime: UTCTimestamp, currentPlaylist: String? = nil,
        storage: StorageStatus? = nil, networkStatus: String? = nil, playerVersion: String? = nil,
        ackedCommands: [String] = []
    ) {
        self.deviceID = deviceID
        self.deviceTime = deviceTime
        self.currentPlaylist = currentPlaylist
        self.storage = storage
        self.networkStatus = networkStatus
        self.playerVersion = playerVersion
        self.ackedCommands = ackedCommands
    }

    /// Limits applied by validation.
    public enum Limits {
        public static let playlistLength = 128
        public static let networkStatusLength = 64
        public static let playerVersionLength = 64
        /// Most command ids one heartbeat may acknowledge (the queue holds at most 100).
        public static let ackedCommands = 100
        /// Longest command id accepted in `acked_commands`.
        public static let commandIDLength = 64
        /// Largest storage figure accepted, in GB (an exabyte).
        public static let storageGB = 1e9
        /// Device clocks outside these are not dates (they could not be stored or formatted).
        public static let earliestDeviceTime = UTCTimestamp(millisecondsSinceEpoch: 0)
        public static let latestDeviceTime = UTCTimestamp(millisecondsSinceEpoch: 253_402_300_799_999)
    }
}
