import Foundation
import HeartbeatDomain
import Testing

@testable import Monitor

/// Alerts on a real Alertmanager: raised when a device goes offline, resolved when it beats again,
/// back after Alertmanager restarts, and delivered late (not lost) when Alertmanager was down.
@Suite(.serialized) struct AlertingTests {
    static func settings(_ alertmanager: AlertmanagerServer) -> [String: String] {
        ["ALERT_WEBHOOK_URL": alertmanager.url, "ALERT_RESEND_SECONDS": "1"]
    }

    /// The `DeviceOffline` alert Alertmanager holds for `device`, if any.
    static func alert(for device: DeviceID, in alertmanager: AlertmanagerServer) async throws -> [String: Any]? {
        try await alertmanager.alerts(named: AlertRules.deviceOffline).first {
            ($0["labels"] as? [String: String])?["device_id"] == device.string
        }
    }

    @Test func anOfflineDeviceIsAlertedResolvedOnItsReturnAndRepostedAfterAnAlertmanagerRestart() async throws {
        let h = try await MonitorHarness.start()
        try await h.migrate()
        let alertmanager = try await AlertmanagerServer.start()
        let devices = try await h.registerEverywhere(2)
        let (silent, silentToken) = devices[0]
        let (beating, beatingToken) = devices[1]
        for (id, token) in devices { try await h.beat(id, token: token) }
        try await h.withMonitor(Self.settings(alertmanager)) { _ in
            let load = Task {
                while !Task.isCancelled {
                    _ = try? await h.beat(beating, token: beatingToken)
                    try? await Task.sleep(for: .milliseconds(500))
                }
            }
            defer { load.cancel() }
            #expect(try await h.eventually(.seconds(8)) { try await Self.alert(for: silent, in: alertmanager) != nil })
            let alert = try #require(try await Self.alert(for: silent, in: alertmanager))
            let labels = alert["labels"] as? [String: String]
            #expect(labels == ["alertname": "DeviceOffline", "device_id": silent.string, "device_name": "device 0", "severity": "warning"])
            let annotations = alert["annotations"] as? [String: String]
            #expect(annotations?["last_heartbeat"].flatMap(UTCTimestamp.init(iso8601:)) != nil, "\(annotations ?? [:])")
            #expect(annotations?["silent_for"] != nil && annotations?["summary"] == "Device device 0 is offline")
            #expect(try await Self.alert(for: beating, in: alertmanager) == nil)

            // Alertmanager restarts and has forgotten every alert: the next re-post raises it again
            await alertmanager.stop()
            try await alertmanager.start()
            #expect(try await Self.alert(for: silent, in: alertmanager) == nil)
            #expect(try await h.eventually(.seconds(5)) { try await Self.alert(for: silent, in: alertmanager) != nil })

            // the device beats again: its alert is resolved
            try await h.beat(silent, token: silentToken)
            #expect(try await h.eventually(.seconds(5)) { try await Self.alert(for: silent, in: alertmanager) == nil })
        }
        await alertmanager.stop()
        await h.shutdown()
    }

    @Test func alertsRaisedWhileAlertmanagerIsDownAreDeliveredWhenItIsBack() async throws {
        let h = try await MonitorHarness.start()
        try await h.migrate()
        let alertmanager = try await AlertmanagerServer.start()
        await alertmanager.stop()
        let devices = try await h.registerEverywhere(1)
        let (silent, token) = devices[0]
        try await h.beat(silent, token: token)
        try await h.withMonitor(Self.settings(alertmanager)) { _ in
            // online (first beat), then offline while Alertmanager is down: both wait in the outbox, unalerted
            #expect(try await h.eventually(.seconds(6)) { try await h.status(silent)?.status == "offline" })
            try await Task.sleep(for: .seconds(1))
            let waiting = try await h.database.connection.query("SELECT count(*) FROM outbox WHERE alerted_at IS NULL AND key = $1", [silent.string])
            #expect(waiting.scalar == "2")
            try await alertmanager.start()
            #expect(try await h.eventually(.seconds(8)) { try await Self.alert(for: silent, in: alertmanager) != nil })
            #expect(
                try await h.eventually(.seconds(3)) {
                    try await h.database.connection.query("SELECT count(*) FROM outbox WHERE alerted_at IS NULL").scalar == "0"
                })
        }
        await alertmanager.stop()
        await h.shutdown()
    }
}
