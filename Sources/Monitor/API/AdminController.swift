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
        router.get("/healthz") { _, _ in Self.json(.ok, #"{"status":"ok"}"#) }
        router.get("/readyz") { _, _ in await readiness() }
        if servesMetrics { metrics.addRoute(to: router) }
        let api = router.group("/api/v1").add(middleware: AdminAuthMiddleware(token: adminToken))
        api.post("/fleet/release-hold") { _, _ in
            guard leadership.isLeader else {
                throw APIError(status: .conflict, code: "not_leader", message: "this instance is a standby; send it to the active monitor")
            }
            let released = stormGuard.withLock { $0.requestRelease() }
            return Self.json(.ok, #"{"released":\#(released)}"#)
        }
        return api
    }

    private func readiness() async -> Response {
        let redisOK = await liveness.probe() != nil
        let postgresOK = (try? await devices.ping()) != nil
        var json = JSONText.Object()
        json.add("status", string: redisOK && postgresOK ? "ready" : "not_ready")
        json.add("redis", string: redisOK ? "ok" : "unreachable")
        json.add("postgres", string: postgresOK ? "ok" : "unreachable")
        json.add("leader", bool: leadership.isLeader)
        json.add("mass_offline_hold", bool: stormGuard.withLock { $0.isHolding })
        return Self.json(redisOK && postgresOK ? .ok : .serviceUnavailable, json.text)
    }

    static func json(_ status: HTTPResponse.Status, _ text: String) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }
}
