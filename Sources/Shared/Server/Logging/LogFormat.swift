/// How the executables write their log lines (`LOG_FORMAT`).
public enum LogFormat: String, Sendable, CaseIterable {
    /// One JSON object per line on standard output (``JSONLogHandler``): for collectors.
    case json
    /// swift-log's readable lines on standard error: for a terminal.
    case text
}
