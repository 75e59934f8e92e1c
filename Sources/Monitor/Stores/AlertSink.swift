import HeartbeatDomain

/// Where alerts go: Alertmanager's v2 API in production.
protocol AlertSink: Sendable {
    /// Posts alerts; throws when the receiver did not take them (they are posted again).
    func post(_ alerts: [Alert]) async throws
}

/// One alert as Alertmanager's `POST /api/v2/alerts` takes it. Alertmanager identifies an alert
/// by its labels: posting the same labels again refreshes it, an `endsAt` in the past resolves it.
struct Alert: Encodable, Sendable, Equatable {
    var labels: [String: String]
    var annotations: [String: String]
    var startsAt: String
    var endsAt: String?
}
