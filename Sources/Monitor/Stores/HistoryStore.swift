import HeartbeatDomain

/// Heartbeat history in daily partitions, and the upkeep that goes with it.
protocol HistoryStore: Sendable {
    /// Writes a batch, fenced by the leader lock; creates a missing day's partition and retries once.
    func write(_ batch: HistoryBatch, lease: Leadership.Lease) async throws
    /// Write-behind of `devices.last_heartbeat` (never waits on rows the applier holds).
    func recordLastHeartbeats(_ newest: [DeviceID: Int64]) async throws
    /// Partitions from yesterday to three days ahead; drops days older than `retentionDays`.
    /// - Returns: partitions dropped.
    func maintainPartitions(retentionDays: Int) async throws -> Int
    /// Deletes published outbox rows, replay keys and status events past `policy`. Returns rows deleted.
    func purge(_ policy: RetentionPolicy) async throws -> Int
}
