import Metrics

/// What `--version` prints, and the `heartbeat_build_info` gauge.
public enum BuildInfo {
    /// The release of both executables (one version for the package).
    public static let version = "0.4.0"

    /// Publishes `heartbeat_build_info{program,version} 1`, so dashboards can tell what runs where.
    public static func publish(program: String) {
        Gauge(label: "heartbeat_build_info", dimensions: [("program", program), ("version", version)]).record(1)
    }
}
