import HeartbeatDomain
import Hummingbird
import Logging
import PostgresAdapter
import Prometheus
import RedisAdapter
import ServerSupport
import ServiceLifecycle

/// Builds the monitor: migrations first, then the stores, the workers over them, and the admin
/// HTTP server. Services stop in reverse order: HTTP, then the workers (each finishes its round),
/// the leader elector (releases the lock), the Kafka producer (flushes), the pools and Redis.
func buildMonitor(configuration: MonitorConfiguration, metricsRegistry: PrometheusCollectorRegistry, logger: Logger) async throws
    -> some ApplicationProtocol
{
    try await migrate(url: configuration.postgresURL, logger: logger)
    let keys = configuration.keys
    let redis = RedisClient(configuration: configuration.redis, logger: logger)
    let apiPool = PostgresPool(url: configuration.postgresURL, applicationName: "heartbeat-monitor-api")
    // its own connection, so relaying never waits behind the ops API or the history writer
    let outboxPool = PostgresPool(url: configuration.postgresURL, applicationName: "heartbeat-monitor-outbox", size: 1)
    // transitions: several buckets at once, a connection each, so a burst of status changes is not
    // held to the one core of a single session (100,000 of 1,000,000 devices offline: 7.1–7.3 s
    // applied one bucket at a time, 5.5–6.3 s two at once, 5.1–6.2 s three; monitor_bench, 2 cores)
    let applyPool = PostgresPool(
        url: configuration.postgresURL, applicationName: "heartbeat-monitor-apply", size: configuration.applyParallelism)
    let publisher = try KafkaEventPublisher(brokers: configuration.kafkaBrokers, properties: configuration.kafkaProperties, logger: logger)

    // stores
    let devices = PostgresDeviceRepository(db: apiPool)
    let cache = DeviceRegistryCache(redis: redis, keys: keys)
    let liveness = RedisLivenessStore(redis: redis, keys: keys)
    let lock = PostgresLeaderLock(url: configuration.postgresURL, applicationName: "hbm-leader-" + configuration.instanceID.prefix(40))

    // shared state
    let leadership = Leadership()
    let metrics = MonitorMetrics()
    let outages = RedisOutages(offlineAfter: configuration.offlineAfter, buckets: keys.allBuckets)
    let redisRunID = RunIDWatch()
    let stormGuard = SharedStormGuard(StormGuard(settings: configuration.storm, window: configuration.offlineAfter))

    // workers, in the order an offline transition passes them
    let elector = LeaderElector(
        lock: lock, liveness: liveness, instanceID: configuration.instanceID, leadership: leadership,
        checkInterval: min(configuration.scanInterval / 2, .seconds(1)), redisTimeout: configuration.leaderRedisTimeout,
        outages: outages, redisRunID: redisRunID, metrics: metrics, logger: logger)
    let scanner = OfflineScanner(
        store: liveness, buckets: keys.allBuckets, leadership: leadership, offlineAfter: configuration.offlineAfter,
        outages: outages, scanInterval: configuration.scanInterval, batchSize: configuration.scanBatchSize,
        stormGuard: stormGuard, metrics: metrics, logger: logger)
    let applier = StreamWorker(
        redis: redis, buckets: keys.allBuckets, consumer: configuration.instanceID,
        handler: TransitionApplier(
            keys: keys, store: PostgresTransitionStore(db: applyPool), leadership: leadership,
            offlineAfter: configuration.offlineAfter, metrics: metrics, logger: logger),
        batchSize: configuration.applyBatchSize, parallelism: configuration.applyParallelism, leadership: leadership,
        pollInterval: configuration.pollInterval, logger: logger)
    let relay = OutboxRelay(
        outbox: PostgresOutboxStore(db: outboxPool), publisher: publisher, topicNames: configuration.kafkaTopics,
        leadership: leadership, batchSize: configuration.outboxBatchSize, pollInterval: configuration.pollInterval,
        metrics: metrics, logger: logger)
    // three buckets at once (each on its own pool connection, below the pool's size so the ops API
    // keeps one): one bucket at a time left the writer waiting on round trips at ~23k rows/s.
    // Lingering: under a steady ~23,000 heartbeats/s, draining again at once after every round made
    // batches of ~56 rows, and each paid a leader check, a COPY and a write-behind UPDATE. Waiting
    // for the next poll unless a batch was full, one bucket at a time unless a backlog is drained
    // (three at once made the work come in bursts that took both cores: p99 up from ~5.9 to ~6.5 ms),
    // took PostgreSQL from 19–24 to 9–13 µs and the monitor from 9–11 to 5–6 µs per heartbeat; on
    // the shared cores the gateway went from 21,600–24,500 to 25,400–28,600 heartbeats/s and p99
    // from 5.8–6.3 to 4.6–5.5 ms (wrk -c64, 2,000 devices, runs alternating). A backlog of 500,000
    // rows still drains at 114,000–125,000 rows/s.
    let history = StreamWorker(
        redis: redis, buckets: keys.allBuckets, consumer: configuration.instanceID,
        handler: HistoryWriter(
            keys: keys, redis: redis, store: PostgresHistoryStore(db: apiPool),
            retentionDays: configuration.historyRetentionDays, retention: configuration.retention,
            redisRunID: redisRunID, lastHeartbeats: LastHeartbeatThrottle(interval: configuration.offlineAfter / 2),
            metrics: metrics, logger: logger),
        batchSize: 5000, parallelism: 3, leadership: leadership, pollInterval: configuration.historyPollInterval,
        lingers: true, logger: logger)
    // checked often: while a bucket's registry is missing its devices get 503 from the gateway
    let seeder = RegistrySeeder(
        devices: devices, registry: cache, liveness: liveness, keys: keys, leadership: leadership,
        checkInterval: min(configuration.scanInterval, .milliseconds(250)), metrics: metrics, logger: logger)
    let reconciler = Reconciler(
        devices: devices, registry: cache, liveness: liveness, keys: keys, leadership: leadership,
        interval: configuration.reconcileInterval, metrics: metrics, logger: logger)

    let census = FleetCensus(
        devices: devices,
        streams: [
            (TransitionApplier.group, { @Sendable in try await applier.backlog() }),
            (HistoryWriter.group, { @Sendable in try await history.backlog() }),
        ],
        leadership: leadership, interval: configuration.scanInterval, metrics: metrics, logger: logger)
    let health = HealthController<OpsRequestContext>(
        liveness: liveness, devices: devices, requestMetrics: RequestMetricsMiddleware(), leadership: leadership, stormGuard: stormGuard,
        metricsRegistry: metricsRegistry, servesMetrics: configuration.metricsPort == nil)
    let router = buildAdminRouter(
        health: health, fleet: FleetController(leadership: leadership, stormGuard: stormGuard),
        registry: DeviceRegistry(devices: devices, cache: cache), adminToken: configuration.adminToken)
    BuildInfo.publish(program: "heartbeat-monitor")
    var services: [any Service] = [
        redis, apiPool, outboxPool, applyPool, publisher, elector, seeder, reconciler, scanner, applier, history, relay, census,
    ]
    if let url = configuration.alertWebhookURL {
        // its client and connection listed first: stopped after the alerter; a connection of its
        // own, so the Kafka relay never waits behind a re-post of every offline device
        let alertmanager = AlertmanagerClient(baseURL: url)
        let alertPool = PostgresPool(url: configuration.postgresURL, applicationName: "heartbeat-monitor-alerts", size: 1)
        services.insert(contentsOf: [alertPool, alertmanager] as [any Service], at: services.firstIndex { $0 is KafkaEventPublisher } ?? 0)
        services.append(
            Alerter(
                store: PostgresAlertStore(db: alertPool), sink: alertmanager, rules: AlertRules(validFor: configuration.alertResendInterval * 4),
                stormGuard: stormGuard, leadership: leadership, pollInterval: max(configuration.pollInterval, .milliseconds(500)),
                resendInterval: configuration.alertResendInterval, metrics: metrics, logger: logger))
    }
    if let port = configuration.metricsPort {
        services.append(
            health.metrics.listener(
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
            try await redis.load(RedisLivenessStore.scripts + [DeviceRegistryCache.boundedPush])
            try await redis.checkBucketCount(keys)
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

/// The monitor's HTTP routes: health, readiness and metrics open; the ops API (`/api/v1`) behind
/// the admin token.
func buildAdminRouter(
    health: HealthController<OpsRequestContext>, fleet: FleetController<OpsRequestContext>, registry: DeviceRegistry, adminToken: String
) -> Router<OpsRequestContext> {
    let router = Router(context: OpsRequestContext.self)
    router.add(middleware: health.requestMetrics)
    health.addRoutes(to: router)
    let api = router.group("/api/v1").add(middleware: AdminAuthMiddleware(token: adminToken))
    fleet.addRoutes(to: api)
    DevicesController<OpsRequestContext>(registry: registry).addRoutes(to: api)
    DeviceQueriesController<OpsRequestContext>(devices: registry.devices, cache: registry.cache).addRoutes(to: api)
    router.addMethodNotAllowed()
    return router
}
