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
        MetricsSystem.bootstrap(factory)
        return registry
    }()

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
