/// Where status transitions become durable: the device row, a status event and an outbox row
/// per change, all in one transaction with the batch's replay keys.
protocol TransitionStore: Sendable {
    /// Applies one bucket's batch, fenced: once the lease's lock is lost, nothing more commits.
    /// - Returns: how many devices changed status.
    func apply(_ batch: TransitionBatch, bucket: Int, offlineAfter: Duration, lease: Leadership.Lease) async throws -> Int
}
