import Synchronization

/// ``TransitionStore`` in memory, for tests of the applier: records each batch as applied.
final class InMemoryTransitionStore: TransitionStore {
    struct Applied: Sendable, Equatable {
        var bucket: Int
        var ids: [String]
        var kinds: [String]
    }

    let applied = Mutex<[Applied]>([])
    /// When set, every apply fails with this error.
    let failure = Mutex<(any Error & Sendable)?>(nil)

    func apply(_ batch: TransitionBatch, bucket: Int, offlineAfter: Duration, lease: Leadership.Lease) async throws -> Int {
        if let error = failure.withLock({ $0 }) { throw error }
        applied.withLock { $0.append(Applied(bucket: bucket, ids: batch.ids, kinds: batch.kinds)) }
        return batch.ids.count
    }
}
