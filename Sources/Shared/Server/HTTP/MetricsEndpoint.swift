import Hummingbird
import Logging
import NIOCore
import Prometheus

/// `GET /metrics` in the Prometheus text format, on the main listener or, with `METRICS_PORT`, on a
/// listener of its own (so the device-facing port need not expose it).
public struct MetricsEndpoint: Sendable {
    public let registry: PrometheusCollectorRegistry
    /// Called before each scrape (gauges refreshed on demand).
    public let refresh: @Sendable () -> Void
    /// `# HELP` texts by metric name (``MetricHelp``).
    public let help: [String: String]

    public init(registry: PrometheusCollectorRegistry, help: [String: String] = MetricHelp.common, refresh: @escaping @Sendable () -> Void = {}) {
        self.registry = registry
        self.help = help
        self.refresh = refresh
    }

    /// The endpoint of a server whose request metrics (the in-flight gauge) are published at each scrape.
    public init<Context>(registry: PrometheusCollectorRegistry, help: [String: String], requestMetrics: RequestMetricsMiddleware<Context>) {
        self.init(registry: registry, help: help) { requestMetrics.refreshGauges() }
    }

    /// Adds `GET /metrics` to `router`.
    public func addRoute<Context: RequestContext>(to router: Router<Context>) {
        router.get("/metrics") { _, _ in self.response() }
    }

    /// The scrape response.
    public func response() -> Response {
        ProcessMetrics.shared.refresh()
        refresh()
        var buffer = [UInt8]()
        buffer.reserveCapacity(16 * 1024)
        registry.emit(into: &buffer)
        return Response(
            status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(bytes: MetricHelp.annotate(buffer, with: help))))
    }

    /// A listener serving only `/metrics` on `host:port`, to run as one of the process's services.
    public func listener(host: String, port: Int, serverName: String, logger: Logger) -> some ApplicationProtocol {
        let router = Router(context: BasicRequestContext.self)
        addRoute(to: router)
        router.addMethodNotAllowed()
        return Application(router: router, configuration: .init(address: .hostname(host, port: port), serverName: serverName), logger: logger)
    }
}
