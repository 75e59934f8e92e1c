/// The value of an unlabelled sample `name` in a Prometheus text exposition, or nil when absent.
func metricValue(_ name: String, in text: some StringProtocol) -> Double? {
    text.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Double($0.split(separator: " ").last ?? "") }
}
