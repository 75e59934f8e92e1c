import HeartbeatDomain
import Logging
import ServiceLifecycle
import Synchronization

/// While leading, turns the outbox's status events into Alertmanager alerts — an `offline` event
/// raises the device's `DeviceOffline`, an `online` one resolves it — and marks them alerted only
/// after Alertmanager took them. Every `resendInterval` it posts every device PostgreSQL holds
/// offline again (Alertmanager expects firing alerts to be refreshed, and an Alertmanager that
/// restarted learns them back), and `FleetMassOffline` while the storm guard holds.
///
/// Alertmanager down: the rows stay unalerted and are posted again with backoff (nothing is lost);
/// detection, the applier and the Kafka relay never wait on it.
struct Alerter: Service {
    let store: any AlertStore
    let sink: any AlertSink
    let rules: AlertRules
    let stormGuard: SharedStormGuard
    let leadership: Leadership
    let pollInterval: Duration
    let resendInterval: Duration
    var batchSize = 500
    /// Events older than this when first seen (alerts enabled late, Alertmanager down for hours)
    /// are marked alerted without a post: a device still offline is raised by the next re-post,
    /// and one back long ago needs nothing.
    var maxEventAge: Duration = .seconds(3600)
    let metrics: MonitorMetrics
    let logger: Logger
    let state = AlerterState()

    func run() async throws {
        let backoff = Backoff()
        let loop = LeaderLoop(leadership: leadership, interval: pollInterval, name: "alerter", logger: logger) { _, _ in
            backoff.failed()
        }
        await loop.run { lease in
            await backoff.wait()
            let more = try await round(lease, now: .now)
            backoff.succeeded()
            return more
        }
    }

    /// One round: new events, the fleet alert, and the re-post when due. Returns true when more events wait.
    func round(_ lease: Leadership.Lease, now: UTCTimestamp) async throws -> Bool {
        let events = try await store.unalerted(limit: batchSize)
        if !events.isEmpty {
            // per device the last event of the batch decides: raised, or resolved
            var latest: [DeviceID: Alert] = [:]
            for event in events where now.millisecondsSinceEpoch - event.at.millisecondsSinceEpoch <= maxEventAge.milliseconds {
                latest[event.device.id] =
                    event.kind == .offline ? rules.deviceOffline(event.device, now: now) : rules.deviceBack(event.device, at: event.at)
            }
            if !latest.isEmpty { try await send(Array(latest.values)) }
            try await store.markAlerted(events.map(\.outboxID), lease: lease)
        }
        let resend = state.resendDue(every: resendInterval)
        try await postFleetAlert(now: now, refresh: resend)
        if resend {
            try await resendOffline(now: now)
            state.resent()
        }
        return events.count == batchSize
    }

    /// `FleetMassOffline`: posted when a hold starts and on every re-post while it lasts, resolved when it ends.
    private func postFleetAlert(now: UTCTimestamp, refresh: Bool) async throws {
        let hold = stormGuard.withLock { guardState in guardState.holdingSince.map { (since: $0, devices: guardState.heldDevices) } }
        let firing = state.fleetFiring
        if let hold, refresh || !firing {
            try await send([rules.fleetMassOffline(holding: hold.devices, since: UTCTimestamp(millisecondsSinceEpoch: hold.since), now: now)])
            state.setFleetFiring(true)
        } else if hold == nil, firing {
            try await send([rules.fleetMassOffline(holding: nil, since: now, now: now)])
            state.setFleetFiring(false)
        }
    }

    /// Every device PostgreSQL holds offline, posted again.
    private func resendOffline(now: UTCTimestamp) async throws {
        var after: DeviceID?
        while true {
            let page = try await store.offlineDevices(after: after, limit: batchSize)
            guard let last = page.last else { return }
            try await send(page.map { rules.deviceOffline($0, now: now) })
            after = last.id
        }
    }

    private func send(_ alerts: [Alert]) async throws {
        do {
            try await sink.post(alerts)
            metrics.alertsSent.increment(by: alerts.count)
        } catch {
            metrics.alertsFailed.increment(by: alerts.count)
            throw error
        }
    }
}

/// The alerter's memory between rounds: when it last re-posted, and whether the fleet alert fires.
final class AlerterState: Sendable {
    private let state = Mutex<(lastResend: ContinuousClock.Instant?, fleetFiring: Bool)>((nil, false))

    /// True when nothing was re-posted yet, or `interval` has passed since.
    func resendDue(every interval: Duration) -> Bool {
        state.withLock { $0.lastResend.map { ContinuousClock.now - $0 >= interval } ?? true }
    }

    func resent() { state.withLock { $0.lastResend = .now } }

    var fleetFiring: Bool { state.withLock { $0.fleetFiring } }

    func setFleetFiring(_ firing: Bool) { state.withLock { $0.fleetFiring = firing } }
}
