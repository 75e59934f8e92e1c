import Foundation
import Metrics
import Synchronization

/// The process's own figures, read from `/proc` at each scrape under the names Prometheus's client
/// libraries use: `process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_open_fds`,
/// `process_start_time_seconds`.
public final class ProcessMetrics: Sendable {
    /// The one instance (the gauges are process-wide).
    public static let shared = ProcessMetrics()

    private let cpu = FloatingPointCounter(label: "process_cpu_seconds_total")
    private let cpuSeen = Mutex<Double>(0)
    private let resident = Gauge(label: "process_resident_memory_bytes")
    private let openFDs = Gauge(label: "process_open_fds")
    private let start = Gauge(label: "process_start_time_seconds")
    private let startedAt = Date().timeIntervalSince1970

    private init() {}

    /// Reads `/proc/self` and records the figures; figures it cannot read are left as they were.
    public func refresh() {
        start.record(startedAt)
        if let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
            let afterName = stat.lastIndex(of: ")")
        {
            // fields after "(comm)": state is field 3, utime 14, stime 15 (1-based)
            let fields = stat[stat.index(after: afterName)...].split(separator: " ")
            if fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) {
                let seconds = (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
                let delta = cpuSeen.withLock { seen in
                    defer { seen = max(seen, seconds) }
                    return seconds - seen
                }
                if delta > 0 { cpu.increment(by: delta) }
            }
        }
        if let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) {
            let fields = statm.split(separator: " ")
            if fields.count > 1, let pages = Double(fields[1]) { resident.record(pages * Double(sysconf(Int32(_SC_PAGESIZE)))) }
        }
        if let descriptors = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") {
            openFDs.record(descriptors.count)
        }
    }
}
