import HeartbeatDomain
import Hummingbird
import Logging
import PostgresAdapter
import Prometheus
import RedisAdapter
import ServerSupport

/// The monitor's HTTP surface, served by every instance, active or standby: health, readiness
/// (Redis and PostgreSQL reachable, plus who leads), metrics, and the ops API behind the admin token.
struct AdminController<Context: RequestContext> {
    let redis: RedisClient
    let db: PostgresPool
    let requestMetrics: RequestMetricsMiddleware<Context>
    let leadership: Leadership
    let scanner: OfflineScanner
    let metricsRegistry: PrometheusCollectorRegistry
    let adminToken: String
    /// False when `METRICS_PORT` moves `/metrics` to a listener of its own.
    var servesMetrics = true

    var metrics: MetricsEndpoint { MetricsEndpoint(registry: metricsRegistry, requestMetrics: requestMetrics) }

    /// Adds the routes; returns the authenticated `/api/v1` group for the other ops controllers.
    @discardableResult
    func addRoutes(to router: Router<Context>) -> RouterGroup<Context> {
        router.get("/healthz") { _, _ in Self.json(.ok, #"{"status":"ok"}"#) }
        router.get("/readyz") { _, _ in try await readiness() }
        if servesMetrics { metrics.addRoute(to: router) }
        let api = router.group("/api/v1").add(middleware: AdminAuthMiddleware(token: adminToken))
        api.post("/fleet/release-hold") { _, _ in
            guard leadership.isLeader else {
                throw APIError(status: .conflict, code: "not_leader", message: "this instance is a standby; send it to the active monitor")
            }
            let released = scanner.stormGuard.withLock { $0.requestRelease() }
            return Self.json(.ok, #"{"released":\#(released)}"#)
        }
        return api
    }

    private func readiness() async throws -> Response {
        var redisOK = true, postgresOK = true
        do { _ = try await redis.execute(["PING"]) } catch { redisOK = false }
        do { try await db.query("SELECT 1") } catch { postgresOK = false }
        let holding = scanner.stormGuard.withLock { $0.isHolding }
        var json = JSONText.Object()
        json.add("status", string: redisOK && postgresOK ? "ready" : "not_ready")
        json.add("redis", string: redisOK ? "ok" : "unreachable")
        json.add("postgres", string: postgresOK ? "ok" : "unreachable")
        json.add("leader", bool: leadership.isLeader)
        json.add("mass_offline_hold", bool: holding)
        return Self.json(redisOK && postgresOK ? .ok : .serviceUnavailable, json.text)
    }

    static func json(_ status: HTTPResponse.Status, _ text: String) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }
}
