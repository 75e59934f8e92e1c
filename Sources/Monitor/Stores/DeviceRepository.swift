import HeartbeatDomain

/// The device registry and its history as PostgreSQL (the truth) holds them: what the ops API
/// reads and writes, and what the registry re-seed and the reconciler read.
protocol DeviceRepository: Sendable {
    /// Registers a device. - Throws: ``DeviceRepositoryError/exists`` when the id is taken.
    func insert(id: DeviceID, name: String, tokenHash: String) async throws
    /// Removes a device (undoes a registration Redis could not take).
    func delete(_ id: DeviceID) async throws
    /// Replaces the token hash. - Returns: the device's playlist, or `nil` when it is unknown.
    func replaceToken(of id: DeviceID, hash: String) async throws -> DeviceRecord?
    /// Assigns a playlist. - Returns: false when the device is unknown.
    func assignPlaylist(_ playlist: String, to id: DeviceID) async throws -> Bool
    func exists(_ id: DeviceID) async throws -> Bool
    /// A page in id order, after `after`, of devices with `status` (any when nil).
    func list(status: DeviceStatus?, after: DeviceID?, limit: Int) async throws -> [DeviceRecord]
    func find(_ id: DeviceID) async throws -> DeviceRecord?
    /// When the device was registered.
    func registeredAt(_ id: DeviceID) async throws -> UTCTimestamp?
    /// Heartbeats newest first, within `from…to` when given; may hold copies of a row written twice.
    func heartbeats(of id: DeviceID, from: UTCTimestamp?, to: UTCTimestamp?, limit: Int) async throws -> [HeartbeatRecord]
    /// Status events newest first.
    func events(of id: DeviceID, limit: Int) async throws -> [StatusEventRecord]
    /// The status the device had at `from` (its last change before) and every change in `from..<to`, in time order.
    func statusChanges(of id: DeviceID, from: UTCTimestamp, to: UTCTimestamp) async throws -> [UptimeCalculator.Change]
    /// A page in id order of every device with a token, for the registry re-seed.
    func registered(after: DeviceID?, limit: Int) async throws -> [RegisteredDevice]
    /// A page in id order of the devices PostgreSQL holds online, for the reconciler.
    func online(after: DeviceID?, limit: Int) async throws -> [DeviceID]
    /// Each device's newest heartbeat PostgreSQL has (or when its status last changed, or now), in ms.
    func lastHeartbeats(of ids: [DeviceID]) async throws -> [ScoredDevice]
    /// Which of `ids` are not online any more.
    func notOnline(among ids: [DeviceID]) async throws -> Set<DeviceID>
    /// How many devices have each status.
    func countByStatus() async throws -> [DeviceStatus: Int]
    /// Throws unless the database answers (readiness).
    func ping() async throws
}

enum DeviceRepositoryError: Error, Equatable {
    /// A device with this id is already registered.
    case exists
}

/// A device as the ops API shows it.
struct DeviceRecord: Sendable, Equatable {
    var id: DeviceID
    var name: String?
    var status: DeviceStatus
    var statusVersion: Int64
    var lastHeartbeat: UTCTimestamp?
    var statusChangedAt: UTCTimestamp?
    var playlist: String?
}

/// One heartbeat of the history: the payload as JSON text, and the stream entry it came from.
struct HeartbeatRecord: Sendable, Equatable {
    var receivedAt: UTCTimestamp
    var deviceTime: UTCTimestamp
    var payloadJSON: String
    var entryID: String?
}

/// One status change of a device.
struct StatusEventRecord: Sendable, Equatable {
    var eventID: String
    var from: String
    var to: String
    var at: UTCTimestamp
    var lastHeartbeat: UTCTimestamp?
    var reason: String
    var statusVersion: Int64
}

/// A registered device as the registry re-seed writes it back into Redis.
struct RegisteredDevice: Sendable, Equatable {
    var id: DeviceID
    var tokenHash: String
    var playlist: String?
    var online: Bool
    var lastHeartbeatMs: Int64?
}
