import HeartbeatDomain
import Hummingbird
import Logging
import Prometheus
import ServerSupport

/// What every instance serves, active or standby, without the admin token: health, readiness
/// (Redis and PostgreSQL reachable, plus who leads) and metrics.
struct HealthController<Context: RequestContext> {
    let liveness: any LivenessStore
    let devices: any DeviceRepository
    let requestMetrics: RequestMetricsMiddleware<Context>
    let leadership: Leadership
    let stormGuard: SharedStormGuard
    let metricsRegistry: PrometheusCollectorRegistry
    /// False when `METRICS_PORT` moves `/metrics` to a listener of its own.
    var servesMetrics = true

    var metrics: MetricsEndpoint { MetricsEndpoint(registry: metricsRegistry, help: MonitorMetrics.help, requestMetrics: requestMetrics) }

    func addRoutes(to router: Router<Context>) {
        router.get("/healthz") { _, _ in ["status": "ok"] }
        router.get("/readyz") { _, _ in await readiness() }
        if servesMetrics { metrics.addRoute(to: router) }
    }

    /// `/readyz`: ready (200) when Redis and PostgreSQL answer, with who leads and whether a storm is held.
    struct Readiness: ResponseEncodable, Sendable {
        var status: String
        var redis: String
        var postgres: String
        var leader: Bool
        var mass_offline_hold: Bool
    }

    private func readiness() async -> EditedResponse<Readiness> {
        let redisOK = await liveness.probe().runID != nil
        let postgresOK = (try? await devices.ping()) != nil
        let readiness = Readiness(
            status: redisOK && postgresOK ? "ready" : "not_ready", redis: redisOK ? "ok" : "unreachable",
            postgres: postgresOK ? "ok" : "unreachable", leader: leadership.isLeader,
            mass_offline_hold: leadership.isLeader && stormGuard.withLock { $0.isHolding })
        return EditedResponse(status: redisOK && postgresOK ? .ok : .serviceUnavailable, response: readiness)
    }
}
