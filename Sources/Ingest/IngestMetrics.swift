import Metrics
import ServerSupport

/// The gateway's own metrics (request counts by route and status, durations and in-flight
/// requests come from `RequestMetricsMiddleware`).
struct IngestMetrics: Sendable {
    /// Time spent handling a heartbeat, every outcome included.
    let heartbeatDuration = Metrics.Timer(label: "heartbeat_request_duration_seconds", preferredDisplayUnit: .seconds)
    /// Heartbeats that failed because the store (Redis) failed or timed out.
    let storeErrors = Counter(label: "heartbeat_redis_errors_total")

    /// One counter per outcome, made once: a metrics-system lookup per request would cost a lock and a hash.
    private let outcomes: [String: Counter] = Dictionary(
        uniqueKeysWithValues: [
            "ok", "invalid_device_id", "invalid_body", "device_id_mismatch", "missing_token", "invalid_token",
            "unknown_device", "body_too_large", "too_frequent", "unavailable",
        ].map { ($0, Counter(label: "heartbeat_outcomes_total", dimensions: [("outcome", $0)])) })

    /// Counts a heartbeat by outcome (`ok` or the error code).
    func outcome(_ code: String) {
        (outcomes[code] ?? Counter(label: "heartbeat_outcomes_total", dimensions: [("outcome", code)])).increment()
    }

    /// `# HELP` texts of everything the gateway exports.
    static let help = MetricHelp.common.merging([
        "heartbeat_request_duration_seconds": "Time spent handling a heartbeat, every outcome included, in seconds.",
        "heartbeat_redis_errors_total": "Heartbeats that failed because Redis failed or timed out.",
        "heartbeat_outcomes_total": "Heartbeats by outcome: ok or the error code answered.",
    ]) { common, _ in common }
}
