import Hummingbird
import NIOCore
import Prometheus
import ServerSupport

/// `GET /healthz` (process up), `GET /readyz` (store reachable), `GET /metrics` (Prometheus text,
/// unless it has a listener of its own).
struct HealthController<Context: RequestContext> {
    let store: any HeartbeatStore
    let metricsRegistry: PrometheusCollectorRegistry
    let requestMetrics: RequestMetricsMiddleware<Context>
    /// False when `METRICS_PORT` moves `/metrics` to a listener of its own.
    var servesMetrics = true

    func addRoutes(to router: Router<Context>) {
        router.get("/healthz") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: #"{"status":"ok"}"#)))
        }
        router.get("/readyz") { _, context in
            do {
                try await store.checkReachable()
                return Response(
                    status: .ok, headers: [.contentType: "application/json"],
                    body: .init(byteBuffer: ByteBuffer(string: #"{"status":"ready","redis":"ok"}"#)))
            } catch {
                context.logger.warning("not ready", metadata: ["error": "\(error)"])
                throw APIError(status: .serviceUnavailable, code: "not_ready", message: "Redis is unreachable: \(error)", retryAfterSeconds: 1)
            }
        }
        if servesMetrics { metrics.addRoute(to: router) }
    }

    var metrics: MetricsEndpoint { MetricsEndpoint(registry: metricsRegistry, help: IngestMetrics.help, requestMetrics: requestMetrics) }
}
