import HeartbeatDomain
import Hummingbird
import Logging
import Prometheus
import ServerSupport

/// The monitor's HTTP surface, served by every instance, active or standby: health, readiness
/// (Redis and PostgreSQL reachable, plus who leads), metrics, and the storm-guard release.
struct AdminController<Context: RequestContext> {
    let liveness: any LivenessStore
    let devices: any DeviceRepository
    let requestMetrics: RequestMetricsMiddleware<Context>
    let leadership: Leadership
    let stormGuard: SharedStormGuard
    let metricsRegistry: PrometheusCollectorRegistry
    let adminToken: String
    /// False when `METRICS_PORT` moves `/metrics` to a listener of its own.
    var servesMetrics = true

    var metrics: MetricsEndpoint { MetricsEndpoint(registry: metricsRegistry, help: MonitorMetrics.help, requestMetrics: requestMetrics) }

    /// Adds the routes; returns the authenticated `/api/v1` group for the other ops controllers.
    @discardableResult
    func addRoutes(to router: Router<Context>) -> RouterGroup<Context> {
        router.get("/healthz") { _, _ in ["status": "ok"] }
        router.get("/readyz") { _, _ in await readiness() }
        if servesMetrics { metrics.addRoute(to: router) }
        let api = router.group("/api/v1").add(middleware: AdminAuthMiddleware(token: adminToken))
        api.post("/fleet/release-hold") { _, _ in
            guard leadership.isLeader else {
                throw APIError(status: .conflict, code: "not_leader", message: "this instance is a standby; send it to the active monitor")
            }
            return ["released": stormGuard.withLock { $0.requestRelease() }]
        }
        return api
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
        let redisOK = await liveness.probe() != nil
        let postgresOK = (try? await devices.ping()) != nil
        let readiness = Readiness(
            status: redisOK && postgresOK ? "ready" : "not_ready", redis: redisOK ? "ok" : "unreachable",
            postgres: postgresOK ? "ok" : "unreachable", leader: leadership.isLeader, mass_offline_hold: stormGuard.withLock { $0.isHolding })
        return EditedResponse(status: redisOK && postgresOK ? .ok : .serviceUnavailable, response: readiness)
    }
}
