/// The `# HELP` text of every metric a process exports. swift-metrics carries no help text, so
/// each process registers its table here and ``MetricsEndpoint`` writes the line before each
/// family's `# TYPE` line.
public enum MetricHelp {
    /// The metrics every server exports (requests, process, build).
    public static let common: [String: String] = [
        "http_requests_total": "HTTP requests answered, by route template, method and status.",
        "http_requests_in_flight": "HTTP requests being handled now.",
        "heartbeat_build_info": "1 for the program and version running.",
        "process_cpu_seconds_total": "CPU time the process used, user and system, in seconds.",
        "process_resident_memory_bytes": "Resident memory of the process, in bytes.",
        "process_open_fds": "File descriptors the process holds open.",
        "process_start_time_seconds": "When the process started, in seconds since the Unix epoch.",
    ]

    /// Inserts `# HELP name text` before every `# TYPE name …` line of `exposition` that has a text.
    public static func annotate(_ exposition: [UInt8], with help: [String: String]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(exposition.count + help.count * 80)
        for line in exposition.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            if line.starts(with: "# TYPE ".utf8) {
                let name = String(decoding: line.dropFirst(7).prefix { $0 != UInt8(ascii: " ") }, as: UTF8.self)
                if let text = help[name] {
                    out.append(contentsOf: "# HELP \(name) \(text)\n".utf8)
                }
            }
            out.append(contentsOf: line)
            out.append(UInt8(ascii: "\n"))
        }
        if exposition.last == UInt8(ascii: "\n") || exposition.isEmpty { out.removeLast() }
        return out
    }
}
