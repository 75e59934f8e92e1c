import HeartbeatDomain

/// The alerts the monitor raises, as Alertmanager takes them: one `DeviceOffline` per device
/// (labels `alertname`, `device_id`, `device_name`, `severity`) and one `FleetMassOffline` while the
/// storm guard holds. A firing alert's `endsAt` lies `validFor` ahead, so Alertmanager resolves
/// it by itself if the monitor stops re-posting it (a monitor gone for good leaves no alert
/// firing forever); the alerter re-posts well within it.
struct AlertRules: Sendable {
    /// How long a posted firing alert stays valid without being posted again.
    let validFor: Duration

    static let deviceOffline = "DeviceOffline"
    static let fleetMassOffline = "FleetMassOffline"

    func deviceOffline(_ device: OfflineDevice, now: UTCTimestamp) -> Alert {
        var annotations = [
            "summary": "Device \(device.name.isEmpty ? device.id.string : device.name) is offline",
            "offline_since": device.since.iso8601,
        ]
        if let last = device.lastHeartbeat {
            annotations["last_heartbeat"] = last.iso8601
            annotations["silent_for"] = Self.span(now.millisecondsSinceEpoch - last.millisecondsSinceEpoch)
        }
        return Alert(
            labels: Self.deviceLabels(device), annotations: annotations, startsAt: device.since.iso8601,
            endsAt: UTCTimestamp(millisecondsSinceEpoch: now.millisecondsSinceEpoch + validFor.milliseconds).iso8601)
    }

    /// The device's alert resolved at `at` (it beat again).
    func deviceBack(_ device: OfflineDevice, at: UTCTimestamp) -> Alert {
        Alert(
            labels: Self.deviceLabels(device),
            annotations: ["summary": "Device \(device.name.isEmpty ? device.id.string : device.name) is back online"],
            startsAt: min(device.since, at).iso8601, endsAt: at.iso8601)
    }

    /// The fleet alert: firing while `holding` devices are held back, resolved when `holding` is nil.
    func fleetMassOffline(holding: Int?, since: UTCTimestamp, now: UTCTimestamp) -> Alert {
        Alert(
            labels: ["alertname": Self.fleetMassOffline, "severity": "critical"],
            annotations: [
                "summary": holding.map { "Mass offline held: \($0) devices silent at once (an ingest or network outage, not the devices)" }
                    ?? "Mass offline hold ended",
                "release": "POST /api/v1/fleet/release-hold",
            ],
            startsAt: since.iso8601,
            endsAt: (holding == nil ? now : UTCTimestamp(millisecondsSinceEpoch: now.millisecondsSinceEpoch + validFor.milliseconds)).iso8601)
    }

    static func deviceLabels(_ device: OfflineDevice) -> [String: String] {
        ["alertname": deviceOffline, "device_id": device.id.string, "device_name": device.name, "severity": "warning"]
    }

    /// `1h02m`, `12m05s`, `40s`.
    static func span(_ ms: Int64) -> String {
        let seconds = max(0, ms / 1000)
        let (h, m, s) = (seconds / 3600, seconds % 3600 / 60, seconds % 60)
        if h > 0 { return "\(h)h" + (m < 10 ? "0" : "") + "\(m)m" }
        if m > 0 { return "\(m)m" + (s < 10 ? "0" : "") + "\(s)s" }
        return "\(s)s"
    }
}
