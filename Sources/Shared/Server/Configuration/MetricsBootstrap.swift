import Metrics
import Prometheus

/// Process-wide metrics: swift-metrics backed by a Prometheus registry served on `/metrics`.
public enum MetricsBootstrap {
    /// The process's registry. The first use bootstraps swift-metrics with it (swift-metrics can be
    /// bootstrapped once per process, so every caller shares this one).
    ///
    /// Metric and label names are sanitized to Prometheus's alphabet (`hb.requests` → `hb_requests`).
    public static let registry: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.nameAndLabelSanitizer = { label, dimensions in
            (sanitize(label), dimensions.map { (sanitize($0.0), $0.1) })
        }
        factory.defaultDurationHistogramBuckets = durationBuckets
        MetricsSystem.bootstrap(factory)
        return registry
    }()

    /// Duration histogram buckets from 100 µs to 10 s: a heartbeat takes well under a millisecond
    /// when nothing queues, and the default buckets (from 5 ms) could not tell 0.3 ms from 4 ms.
    public static let durationBuckets: [Duration] = [
        .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5),
        .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
        .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
    ]

    /// Replaces every character outside `[a-zA-Z0-9_]` with `_`.
    public static func sanitize(_ name: String) -> String {
        String(
            name.unicodeScalars.map { scalar -> Character in
                switch scalar {
                case "a"..."z", "A"..."Z", "0"..."9", "_": Character(scalar)
                default: "_"
                }
            })
    }
}
