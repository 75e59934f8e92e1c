import HeartbeatDomain
import Hummingbird
import Logging
import Prometheus
import RedisAdapter
import ServerSupport
import ServiceLifecycle

/// Builds the gateway on Redis: the client (a service closed after the HTTP server) and the router.
func buildApplication(
    configuration: IngestConfiguration, metricsRegistry: PrometheusCollectorRegistry, logger: Logger
) -> some ApplicationProtocol {
    let redis = RedisClient(configuration: configuration.redis, logger: logger)
    let store = RedisHeartbeatStore(
        redis: redis, keys: configuration.keys,
        minimumInterval: configuration.minimumHeartbeatInterval, historyStreamCap: configuration.historyStreamCap)
    let requestMetrics = RequestMetricsMiddleware<BasicRequestContext>()
    let router = buildRouter(
        store: store, metricsRegistry: metricsRegistry, requestMetrics: requestMetrics,
        maxBodyBytes: configuration.maxBodyBytes, servesMetrics: configuration.metricsPort == nil)
    BuildInfo.publish(program: "heartbeat-ingest")
    var services: [any Service] = [redis]
    if let port = configuration.metricsPort {
        services.append(
            MetricsEndpoint(registry: metricsRegistry, help: IngestMetrics.help, requestMetrics: requestMetrics).listener(
                host: configuration.host, port: port, serverName: "heartbeat-ingest-metrics", logger: logger))
    }
    var app = Application(
        router: router,
        server: configuration.http.server,
        configuration: configuration.http.configuration(
            address: .hostname(configuration.host, port: configuration.port), serverName: "heartbeat-ingest", logger: logger),
        services: services,
        logger: logger)
    app.beforeServerStarts {
        do {
            try await redis.load([HeartbeatScript.script])
            try await redis.checkBucketCount(configuration.keys)
        } catch let mismatch as BucketCountMismatch {
            logger.critical("refusing to start", metadata: ["error": "\(mismatch)"])
            throw mismatch
        } catch {
            // Not fatal: the gateway answers 503 until Redis is back, and scripts load on first use.
            logger.warning("could not preload scripts; Redis unreachable?", metadata: ["error": "\(error)"])
        }
    }
    return app
}

/// The gateway's routes over any ``HeartbeatStore``.
func buildRouter(
    store: any HeartbeatStore, metricsRegistry: PrometheusCollectorRegistry,
    requestMetrics metrics: RequestMetricsMiddleware<BasicRequestContext> = RequestMetricsMiddleware(),
    maxBodyBytes: Int = 16 * 1024, servesMetrics: Bool = true
) -> Router<BasicRequestContext> {
    let router = Router(context: BasicRequestContext.self)
    router.add(middleware: metrics)
    HeartbeatController(store: store, maxBodyBytes: maxBodyBytes, metrics: IngestMetrics()).addRoutes(to: router)
    HealthController(store: store, metricsRegistry: metricsRegistry, requestMetrics: metrics, servesMetrics: servesMetrics).addRoutes(to: router)
    router.addMethodNotAllowed()
    return router
}
