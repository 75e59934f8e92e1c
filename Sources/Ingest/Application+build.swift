import HeartbeatDomain
import Hummingbird
import HummingbirdCore
import Logging
import Prometheus
import RedisAdapter
import ServerSupport
import ServiceLifecycle

/// Builds the gateway on Redis: the client (a service closed after the HTTP server) and the router.
/// - Parameter eventLoopHeartbeats: see the other ``buildApplication(configuration:store:services:metricsRegistry:logger:eventLoopHeartbeats:)``.
func buildApplication(
    configuration: IngestConfiguration, metricsRegistry: PrometheusCollectorRegistry, logger: Logger, eventLoopHeartbeats: Bool = true
) -> some ApplicationProtocol {
    let redis = RedisClient(configuration: configuration.redis, logger: logger)
    let store = RedisHeartbeatStore(
        redis: redis, keys: configuration.keys,
        minimumInterval: configuration.minimumHeartbeatInterval, historyStreamCap: configuration.historyStreamCap)
    var app = buildApplication(
        configuration: configuration, store: store, services: [redis], metricsRegistry: metricsRegistry, logger: logger,
        eventLoopHeartbeats: eventLoopHeartbeats)
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

/// The gateway over any ``HeartbeatStore``: heartbeats answered on the event loop by
/// ``HeartbeatChannelHandler`` (or, with `eventLoopHeartbeats` false, by the router's route, which
/// answers the same), everything else by the router.
/// - Parameter services: run with the server and stopped after it (the store's connections).
func buildApplication(
    configuration: IngestConfiguration, store: any HeartbeatStore, services: [any Service] = [],
    metricsRegistry: PrometheusCollectorRegistry, logger: Logger, eventLoopHeartbeats: Bool = true
) -> Application<RouterResponder<BasicRequestContext>> {
    let requestMetrics = RequestMetricsMiddleware<BasicRequestContext>()
    let heartbeats = HeartbeatController<BasicRequestContext>(store: store, maxBodyBytes: configuration.maxBodyBytes, metrics: IngestMetrics())
    let router = buildRouter(
        store: store, metricsRegistry: metricsRegistry, requestMetrics: requestMetrics, heartbeats: heartbeats,
        servesMetrics: configuration.metricsPort == nil)
    BuildInfo.publish(program: "heartbeat-ingest")
    var services = services
    if let port = configuration.metricsPort {
        services.append(
            MetricsEndpoint(registry: metricsRegistry, help: IngestMetrics.help, requestMetrics: requestMetrics).listener(
                host: configuration.host, port: port, serverName: "heartbeat-ingest-metrics", logger: logger))
    }
    let serverName = "heartbeat-ingest"
    let server: HTTPServerBuilder =
        eventLoopHeartbeats
        ? .http1(
            configuration: configuration.http.http1,
            heartbeats: .init(controller: heartbeats, requestMetrics: requestMetrics, serverName: serverName, logger: logger))
        : configuration.http.server
    return Application(
        router: router,
        server: server,
        configuration: configuration.http.configuration(
            address: .hostname(configuration.host, port: configuration.port), serverName: serverName, logger: logger),
        services: services,
        logger: logger)
}

/// The gateway's routes over any ``HeartbeatStore``.
func buildRouter(
    store: any HeartbeatStore, metricsRegistry: PrometheusCollectorRegistry,
    requestMetrics metrics: RequestMetricsMiddleware<BasicRequestContext> = RequestMetricsMiddleware(),
    heartbeats: HeartbeatController<BasicRequestContext>? = nil, servesMetrics: Bool = true
) -> Router<BasicRequestContext> {
    let router = Router(context: BasicRequestContext.self)
    router.add(middleware: metrics)
    (heartbeats ?? HeartbeatController(store: store, maxBodyBytes: 16 * 1024, metrics: IngestMetrics())).addRoutes(to: router)
    HealthController(store: store, metricsRegistry: metricsRegistry, requestMetrics: metrics, servesMetrics: servesMetrics).addRoutes(to: router)
    router.addMethodNotAllowed()
    return router
}
