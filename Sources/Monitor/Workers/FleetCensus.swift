import Logging
import ServiceLifecycle

/// While leading, every scan interval: the gauges a scan does not give, counted where they live —
/// devices offline and never heard from (PostgreSQL), and each consumer group's stream backlog
/// (Redis: entries pending and not yet delivered).
struct FleetCensus: Service {
    let devices: any DeviceRepository
    /// Each consumer group's backlog, by group name.
    let streams: [(group: String, backlog: @Sendable () async throws -> (pending: Int, unread: Int))]
    let leadership: Leadership
    let interval: Duration
    let metrics: MonitorMetrics
    let logger: Logger
    /// The status count reads the whole devices table: at most this often (with a short test scan
    /// interval, a million-device count every second competed with the writers).
    var countEvery: Duration = .seconds(15)
    private let lastCount = Cadence()

    func run() async throws {
        await LeaderLoop(leadership: leadership, interval: interval, name: "fleet census", logger: logger).run { _ in
            try await count()
            return false
        }
    }

    func count() async throws {
        if lastCount.isDue(every: countEvery) {
            let statuses = try await devices.countByStatus()
            metrics.devicesOffline.record(statuses[.offline] ?? 0)
            metrics.devicesUnknown.record(statuses[.unknown] ?? 0)
            lastCount.done()
        }
        for stream in streams {
            let backlog = try await stream.backlog()
            metrics.streamBacklog(group: stream.group, pending: backlog.pending, unread: backlog.unread)
        }
    }
}
