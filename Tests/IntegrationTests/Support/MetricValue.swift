/// The value of an unlabelled sample `name` in a Prometheus text exposition, or nil when absent.
func metricValue(_ name: String, in text: some StringProtocol) -> Double? {
    text.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Double($0.split(separator: " ").last ?? "") }
}

/// Metric families of a Prometheus text exposition that have a `# TYPE` line but no `# HELP` line.
func metricFamiliesWithoutHelp(_ text: some StringProtocol) -> [String] {
    let lines = String(text).split(whereSeparator: \.isNewline).map(String.init)
    func family(_ line: String) -> String? { line.split(separator: " ").dropFirst(2).first.map(String.init) }
    let helped = Set(lines.filter { $0.hasPrefix("# HELP ") }.compactMap(family))
    return lines.filter { $0.hasPrefix("# TYPE ") }.compactMap(family).filter { !helped.contains($0) }
}
