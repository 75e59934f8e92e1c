import Hummingbird
import NIOCore
import Prometheus
import Shared

/// `GET /healthz` (process up), `GET /readyz` (store reachable), `GET /metrics` (Prometheus text).
struct HealthController<Context: RequestContext> {
    let store: any HeartbeatStore
    let metricsRegistry: PrometheusCollectorRegistry
    let requestMetrics: RequestMetricsMiddleware<Context>

    func addRoutes(to router: Router<Context>) {
        router.get("/healthz") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: #"{"status":"ok"}"#)))
        }
        router.get("/readyz") { _, context in
            do {
                try await store.checkReachable()
                return Response(status: .ok, headers: [.contentType: "application/json"],
                                body: .init(byteBuffer: ByteBuffer(string: #"{"status":"ready","redis":"ok"}"#)))
            } catch {
                context.logger.warning("not ready", metadata: ["error": "\(error)"])
                throw APIError(status: .serviceUnavailable, code: "not_ready", message: "Redis is unreachable: \(error)", retryAfterSeconds: 1)
            }
        }
        router.get("/metrics") { _, _ in
            requestMetrics.refreshGauges()
            var buffer = [UInt8]()
            buffer.reserveCapacity(16 * 1024)
            metricsRegistry.emit(into: &buffer)
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                            body: .init(byteBuffer: ByteBuffer(bytes: buffer)))
        }
    }
}
