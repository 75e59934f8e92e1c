import HeartbeatDomain

/// What the alerter reads and marks: the outbox's status events not yet alerted on, and the devices
/// offline now (re-posted on a schedule, so Alertmanager keeps them firing).
protocol AlertStore: Sendable {
    /// Outbox events not yet alerted on, oldest first.
    func unalerted(limit: Int) async throws -> [StatusAlertEvent]
    /// Marks events alerted on, fenced by the leader lock.
    func markAlerted(_ outboxIDs: [Int64], lease: Leadership.Lease) async throws
    /// A page in id order of the devices PostgreSQL holds offline.
    func offlineDevices(after: DeviceID?, limit: Int) async throws -> [OfflineDevice]
}

/// A status change as an alert shows it.
struct StatusAlertEvent: Sendable, Equatable {
    var outboxID: Int64
    var device: OfflineDevice
    /// `offline` raises the device's alert, `online` resolves it.
    var kind: StatusTransition.Kind
    /// When the change happened.
    var at: UTCTimestamp
}

/// A device offline (or just back), with what its alert says.
struct OfflineDevice: Sendable, Equatable {
    var id: DeviceID
    var name: String
    /// When it went offline.
    var since: UTCTimestamp
    var lastHeartbeat: UTCTimestamp?
}
