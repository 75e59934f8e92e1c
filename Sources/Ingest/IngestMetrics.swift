import Metrics

/// The gateway's own metrics (request counts by route and status, durations and in-flight
/// requests come from Hummingbird's `MetricsMiddleware`).
struct IngestMetrics: Sendable {
    /// Time spent handling a heartbeat, every outcome included.
    let heartbeatDuration = Metrics.Timer(label: "heartbeat_request_duration", preferredDisplayUnit: .seconds)
    /// Heartbeats that failed because the store (Redis) failed or timed out.
    let storeErrors = Counter(label: "heartbeat_redis_errors_total")

    /// Counts a heartbeat by outcome (`ok` or the error code).
    func outcome(_ code: String) {
        Counter(label: "heartbeat_outcomes_total", dimensions: [("outcome", code)]).increment()
    }
}

extension Metrics.Timer {
    func recordInterval(since start: ContinuousClock.Instant) {
        let elapsed = ContinuousClock.now - start
        recordNanoseconds(elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
    }
}
