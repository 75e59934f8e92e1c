import HeartbeatDomain
import Hummingbird
import Logging
import PostgresAdapter
import Prometheus
import RedisAdapter
import ServerSupport
import ServiceLifecycle

/// Builds the monitor: migrations first, then the admin HTTP server with every worker as a service.
/// Shutdown runs in reverse: HTTP, outbox relay (flushes Kafka), applier (finishes its batch),
/// scanner, leader elector (releases the lock), Redis.
func buildMonitor(configuration: MonitorConfiguration, metricsRegistry: PrometheusCollectorRegistry, logger: Logger) async throws -> some ApplicationProtocol {
    try await migrate(url: configuration.postgresURL, logger: logger)
    let redis = RedisClient(configuration: configuration.redis, logger: logger)
    let leadership = Leadership()
    let metrics = MonitorMetrics()
    let checkInterval = min(configuration.scanInterval / 2, .seconds(1))
    let outages = RedisOutages(offlineAfter: configuration.offlineAfter)
    let elector = LeaderElector(postgresURL: configuration.postgresURL, redis: redis, instanceID: configuration.instanceID,
                                leadership: leadership, checkInterval: checkInterval, redisTimeout: configuration.leaderRedisTimeout, outages: outages,
                                metrics: metrics, logger: logger)
    let scanner = OfflineScanner(redis: redis, keys: configuration.keys, leadership: leadership,
                                 offlineAfter: configuration.offlineAfter, outages: outages, scanInterval: configuration.scanInterval,
                                 batchSize: configuration.scanBatchSize, storm: configuration.storm, metrics: metrics, logger: logger)
    let applier = TransitionApplier(redis: redis, keys: configuration.keys, leadership: leadership, consumer: configuration.instanceID,
                                    offlineAfter: configuration.offlineAfter, batchSize: configuration.applyBatchSize,
                                    pollInterval: configuration.pollInterval, metrics: metrics, logger: logger)
    let relay = OutboxRelay(postgresURL: configuration.postgresURL, brokers: configuration.kafkaBrokers, properties: configuration.kafkaProperties, topicNames: configuration.kafkaTopics, leadership: leadership,
                            batchSize: configuration.outboxBatchSize, pollInterval: configuration.pollInterval, metrics: metrics, logger: logger)
    let db = PostgresPool(url: configuration.postgresURL, applicationName: "heartbeat-monitor-api")
    let registry = DeviceRegistryCache(redis: redis, keys: configuration.keys)
    let history = HistoryWriter(redis: redis, keys: configuration.keys, leadership: leadership, db: db, consumer: configuration.instanceID,
                                retentionDays: configuration.historyRetentionDays, retention: configuration.retention, batchSize: 5000,
                                pollInterval: configuration.pollInterval, logger: logger)
    // checked often: while a bucket's registry is missing its devices get 503 from the gateway
    let seeder = RegistrySeeder(db: db, registry: registry, leadership: leadership,
                                checkInterval: min(configuration.scanInterval, .milliseconds(250)), metrics: metrics, logger: logger)
    let reconciler = Reconciler(db: db, redis: redis, keys: configuration.keys, leadership: leadership,
                                interval: configuration.reconcileInterval, metrics: metrics, logger: logger)
    let admin = AdminController<BasicRequestContext>(
        redis: redis, db: db, requestMetrics: RequestMetricsMiddleware(), leadership: leadership, scanner: scanner,
        metricsRegistry: metricsRegistry, adminToken: configuration.adminToken, servesMetrics: configuration.metricsPort == nil)
    let router = buildAdminRouter(admin: admin, devices: DevicesController(db: db, registry: registry))
    BuildInfo.publish(program: "heartbeat-monitor")
    var services: [any Service] = [redis, elector, seeder, reconciler, scanner, applier, history, relay]
    if let port = configuration.metricsPort {
        services.append(admin.metrics.listener(
            host: configuration.adminHost, port: port, serverName: "heartbeat-monitor-metrics", logger: logger))
    }
    var app = Application(
        router: router,
        server: configuration.http.server,
        configuration: configuration.http.configuration(
            address: .hostname(configuration.adminHost, port: configuration.adminPort), serverName: "heartbeat-monitor", logger: logger),
        services: services,
        logger: logger)
    app.beforeServerStarts {
        do {
            try await redis.load([OfflineScanScript.count, OfflineScanScript.apply, DeviceRegistryCache.boundedPush,
                                  ReconcileScript.restore, ReconcileScript.undo])
            try await redis.checkBucketCount(configuration.keys)
        } catch let mismatch as BucketCountMismatch {
            logger.critical("refusing to start", metadata: ["error": "\(mismatch)"])
            throw mismatch
        } catch {
            logger.warning("could not preload scripts; Redis unreachable?", metadata: ["error": "\(error)"])
        }
    }
    return app
}

/// Applies pending migrations, waiting up to 30 s for PostgreSQL to accept connections.
func migrate(url: String, logger: Logger) async throws {
    let deadline = ContinuousClock.now + .seconds(30)
    while true {
        do {
            let connection = try await PostgresConnection.connect(url: url, applicationName: "heartbeat-monitor-migrate")
            let applied = try await Migrations.run(on: connection)
            await connection.close()
            if !applied.isEmpty { logger.notice("applied migrations", metadata: ["versions": "\(applied)"]) }
            return
        } catch let error as PostgresError {
            guard case .connectionFailed = error, ContinuousClock.now < deadline else { throw error }
            logger.warning("waiting for PostgreSQL", metadata: ["error": "\(error)"])
            try await Task.sleep(for: .seconds(1))
        }
    }
}

/// The monitor's HTTP routes: health, readiness and metrics, and the ops API behind the admin token.
func buildAdminRouter(admin: AdminController<BasicRequestContext>, devices: DevicesController<BasicRequestContext>) -> Router<BasicRequestContext> {
    let router = Router(context: BasicRequestContext.self)
    router.add(middleware: admin.requestMetrics)
    devices.addRoutes(to: admin.addRoutes(to: router))
    router.addMethodNotAllowed()
    return router
}
