/// Where status transitions become durable: the device row, a status event and an outbox row
/// per change, all in one transaction with the batch's replay keys.
protocol TransitionStore: Sendable {
    /// Applies one bucket's batch (written through the leader's lock session, so a lost lock commits nothing).
    /// - Returns: how many devices changed status.
    func apply(_ batch: TransitionBatch, bucket: Int, offlineAfter: Duration, lease: Leadership.Lease) async throws -> Int
}
