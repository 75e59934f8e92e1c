import Foundation

/// What a run measured, as text and JSON.
struct LoadReport {
    var stats: LoadStats.Snapshot
    var elapsed: Duration
    var audit: AuditResult?

    var seconds: Double { elapsed.seconds }

    func percentileMs(_ p: Double) -> Double { Double(stats.latency.valueAtPercentile(p)) / 1000 }

    var text: String {
        var lines = [
            String(
                format: "sent %d in %.1f s: %.0f req/s; ok %d; transport errors %d", stats.sent, seconds, Double(stats.sent) / seconds, stats.ok,
                stats.transportErrors),
            "by status: " + stats.byStatus.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "),
            String(
                format: "latency ms: p50 %.2f  p90 %.2f  p99 %.2f  max %.2f", percentileMs(50), percentileMs(90), percentileMs(99),
                Double(stats.latency.max) / 1000),
        ]
        if let audit { lines += audit.lines }
        return lines.joined(separator: "\n")
    }

    var json: String {
        var object: [String: Any] = [
            "sent": stats.sent, "ok": stats.ok, "transport_errors": stats.transportErrors, "seconds": seconds,
            "requests_per_second": Double(stats.sent) / seconds,
            "by_status": Dictionary(uniqueKeysWithValues: stats.byStatus.map { (String($0.key), $0.value) }),
            "latency_ms": ["p50": percentileMs(50), "p90": percentileMs(90), "p99": percentileMs(99), "max": Double(stats.latency.max) / 1000],
        ]
        if let audit { object["audit"] = audit.dictionary }
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }
}
