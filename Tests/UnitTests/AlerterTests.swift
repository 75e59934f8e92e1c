import HeartbeatDomain
import Logging
import Testing

@testable import Monitor

/// The alerter over in-memory stores: which alerts a batch of status events makes, nothing marked
/// when Alertmanager refuses, and the fleet alert following the storm guard.
@Suite struct AlerterTests {
    let store = InMemoryAlertStore()
    let sink = InMemoryAlertSink()
    let stormGuard = SharedStormGuard(StormGuard(settings: .init(minDevices: 2, fraction: 0.5, maxHold: .seconds(900)), window: .seconds(600)))
    let leadership = Leadership()
    let now = UTCTimestamp(millisecondsSinceEpoch: 1_770_028_200_000)

    var alerter: Alerter {
        Alerter(
            store: store, sink: sink, rules: AlertRules(validFor: .seconds(240)), stormGuard: stormGuard, leadership: leadership,
            pollInterval: .seconds(1), resendInterval: .seconds(3600), metrics: MonitorMetrics(), logger: Logger(label: "test"))
    }

    func device(_ name: String) -> OfflineDevice {
        OfflineDevice(
            id: .random(), name: name, since: UTCTimestamp(millisecondsSinceEpoch: now.millisecondsSinceEpoch - 60_000),
            lastHeartbeat: UTCTimestamp(millisecondsSinceEpoch: now.millisecondsSinceEpoch - 665_000))
    }

    @Test func aDeviceBackInTheSameBatchIsPostedResolvedOnly() async throws {
        let (flapping, down) = (device("lobby"), device("hall"))
        store.events.withLock {
            $0 = [
                StatusAlertEvent(outboxID: 1, device: flapping, kind: .offline, at: flapping.since),
                StatusAlertEvent(outboxID: 2, device: down, kind: .offline, at: down.since),
                StatusAlertEvent(outboxID: 3, device: flapping, kind: .online, at: now),
            ]
        }
        _ = try await alerter.round(leadership.grant(.init(backendPID: 0)), now: now)
        let posted = sink.posts.withLock { $0.first ?? [] }
        #expect(posted.count == 2)
        let resolved = try #require(posted.first { $0.labels["device_id"] == flapping.id.string })
        #expect(resolved.endsAt == now.iso8601)
        let firing = try #require(posted.first { $0.labels["device_id"] == down.id.string })
        #expect(firing.labels == ["alertname": "DeviceOffline", "device_id": down.id.string, "device_name": "hall", "severity": "warning"])
        #expect(
            firing.startsAt == down.since.iso8601
                && firing.endsAt == UTCTimestamp(millisecondsSinceEpoch: now.millisecondsSinceEpoch + 240_000).iso8601)
        #expect(firing.annotations["silent_for"] == "11m05s")
        #expect(store.alerted.withLock { $0 } == [1, 2, 3])
    }

    @Test func nothingIsMarkedWhenAlertmanagerRefuses() async throws {
        let down = device("hall")
        store.events.withLock { $0 = [StatusAlertEvent(outboxID: 7, device: down, kind: .offline, at: down.since)] }
        sink.failing.withLock { $0 = true }
        let lease = leadership.grant(.init(backendPID: 0))
        await #expect(throws: InMemoryAlertSink.Down.self) { _ = try await alerter.round(lease, now: now) }
        #expect(store.alerted.withLock { $0.isEmpty })
        sink.failing.withLock { $0 = false }
        _ = try await alerter.round(lease, now: now)
        #expect(store.alerted.withLock { $0 } == [7])
    }

    @Test func theFleetAlertFiresWhileTheStormGuardHoldsAndResolvesAfter() async throws {
        let lease = leadership.grant(.init(backendPID: 0))
        let alerter = alerter
        _ = try await alerter.round(lease, now: now)
        #expect(sink.posts.withLock { $0.isEmpty })
        _ = stormGuard.withLock { $0.decide(stale: 40, online: 50, nowMs: now.millisecondsSinceEpoch) }
        _ = try await alerter.round(lease, now: now)
        let firing = try #require(sink.posts.withLock { $0.last?.first })
        #expect(firing.labels == ["alertname": "FleetMassOffline", "severity": "critical"])
        #expect(firing.annotations["summary"]?.contains("40 devices") == true)
        _ = stormGuard.withLock { $0.requestRelease() }
        _ = stormGuard.withLock { $0.decide(stale: 40, online: 50, nowMs: now.millisecondsSinceEpoch + 1000) }
        _ = try await alerter.round(lease, now: now)
        let resolved = try #require(sink.posts.withLock { $0.last?.first })
        #expect(resolved.labels["alertname"] == "FleetMassOffline" && resolved.endsAt == now.iso8601)
        #expect(sink.posts.withLock { $0.count } == 2)
    }

    @Test func eventsTooOldWhenFirstSeenAreMarkedWithoutAPost() async throws {
        let old = device("lobby")
        let hoursAgo = UTCTimestamp(millisecondsSinceEpoch: now.millisecondsSinceEpoch - 3 * 3_600_000)
        store.events.withLock { $0 = [StatusAlertEvent(outboxID: 9, device: old, kind: .offline, at: hoursAgo)] }
        _ = try await alerter.round(leadership.grant(.init(backendPID: 0)), now: now)
        #expect(sink.posts.withLock { $0.isEmpty })
        #expect(store.alerted.withLock { $0 } == [9])
    }

    @Test func spansReadAsOperatorsWriteThem() {
        #expect(AlertRules.span(40_000) == "40s")
        #expect(AlertRules.span(725_000) == "12m05s")
        #expect(AlertRules.span(3_720_000) == "1h02m")
    }
}
