import Configuration
import Foundation
import HeartbeatDomain
import Hummingbird
import HummingbirdTesting
import KafkaAdapter
import Logging
import RedisAdapter
import ServiceLifecycle

@testable import Ingest
@testable import Monitor

/// A private Redis, a fresh PostgreSQL database and the shared Kafka mock, with monitors and a
/// heartbeat store on top, at scaled-down durations.
struct MonitorHarness {
    let server: RedisServer
    let redis: RedisClient
    let keys = KeySchema(buckets: 4)
    let registry: DeviceRegistryCache
    let store: RedisHeartbeatStore
    let database: TestDatabase
    let kafkaBrokers: String
    /// Set on a cluster: `REDIS_CLUSTER_NODES` for the monitors this harness builds.
    var clusterNodes: String? = nil

    static func start(appendOnly: Bool = false) async throws -> MonitorHarness {
        guard let brokers = ProcessInfo.processInfo.environment["KAFKA_BROKERS"] else {
            throw TestFailure("KAFKA_BROKERS is not set: run the tests with `make test` (scripts/run-tests.sh starts the Kafka mock)")
        }
        let server = try await RedisServer.start(appendOnly: appendOnly)
        let redis = server.client()
        let keys = KeySchema(buckets: 4)
        return MonitorHarness(
            server: server, redis: redis, registry: DeviceRegistryCache(redis: redis, keys: keys),
            store: RedisHeartbeatStore(redis: redis, keys: keys, minimumInterval: .zero, historyStreamCap: 100_000),
            database: try await TestDatabase.create(), kafkaBrokers: brokers)
    }

    /// The same on a Redis Cluster: the harness's client and its monitors route by slot
    /// (``server`` is the cluster's first node).
    static func start(cluster: RedisClusterNodes) async throws -> MonitorHarness {
        guard let brokers = ProcessInfo.processInfo.environment["KAFKA_BROKERS"] else {
            throw TestFailure("KAFKA_BROKERS is not set: run the tests with `make test` (scripts/run-tests.sh starts the Kafka mock)")
        }
        let redis = cluster.client()
        let keys = KeySchema(buckets: 4)
        return MonitorHarness(
            server: cluster.nodes[0], redis: redis, registry: DeviceRegistryCache(redis: redis, keys: keys),
            store: RedisHeartbeatStore(redis: redis, keys: keys, minimumInterval: .zero, historyStreamCap: 100_000),
            database: try await TestDatabase.create(), kafkaBrokers: brokers,
            clusterNodes: cluster.seeds.map(\.description).joined(separator: ","))
    }

    func configuration(instance: String = "test-\(UUID().uuidString.prefix(8))", _ extra: [String: String] = [:]) throws -> MonitorConfiguration {
        var environment = [
            "REDIS_URL": server.url, "POSTGRES_URL": database.url, "KAFKA_BROKERS": kafkaBrokers, "BUCKETS": "4",
            "ADMIN_HOST": "127.0.0.1", "ADMIN_PORT": "0", "ADMIN_TOKEN": MonitorHarness.adminToken,
            "OFFLINE_AFTER_SECONDS": "2", "SCAN_INTERVAL_SECONDS": "0.5", "MONITOR_INSTANCE_ID": instance,
            "MONITOR_POLL_INTERVAL_SECONDS": "0.05",
        ]
        if let clusterNodes { environment["REDIS_CLUSTER_NODES"] = clusterNodes }
        environment.merge(extra) { $1 }
        return try MonitorConfiguration(reader: ConfigReader(provider: EnvironmentVariablesProvider(environmentVariables: environment)))
    }

    static let adminToken = "test-admin-token-0123456789"

    static var logger: Logger {
        var logger = Logger(label: "monitor-under-test")
        logger.logLevel = ProcessInfo.processInfo.environment["TEST_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .error
        return logger
    }

    /// Runs a monitor on a live admin socket for the duration of `test`.
    func withMonitor(_ extra: [String: String] = [:], _ test: @Sendable (any TestClientProtocol) async throws -> Void) async throws {
        let app = try await buildMonitor(configuration: try configuration(extra), metricsRegistry: IntegrationMetrics.registry, logger: Self.logger)
        try await app.test(.live, test)
    }

    /// Starts a monitor in the background; stop it with ``RunningMonitor/kill()`` or ``RunningMonitor/stop()``.
    func startMonitor(instance: String, _ extra: [String: String] = [:]) async throws -> RunningMonitor {
        let app = try await buildMonitor(
            configuration: try configuration(instance: instance, extra), metricsRegistry: IntegrationMetrics.registry, logger: Self.logger)
        let group = ServiceGroup(configuration: .init(services: [app], logger: Self.logger))
        return RunningMonitor(instance: instance, group: group, task: Task { try await group.run() })
    }

    /// A heartbeat straight through the gateway's Redis script.
    @discardableResult
    func beat(_ id: DeviceID, token: String, acked: [String] = []) async throws -> HeartbeatOutcome {
        try await store.record(
            HeartbeatPayload(deviceID: id, deviceTime: UTCTimestamp(millisecondsSinceEpoch: 1_770_028_200_000), ackedCommands: acked),
            tokenHash: DeviceToken.hash(token))
    }

    /// Registers devices as the ops API does: in PostgreSQL (the truth) and in Redis (the gateway's copy).
    func registerEverywhere(_ count: Int) async throws -> [(DeviceID, String)] {
        var devices: [(DeviceID, String)] = []
        for index in 0..<count {
            let id = DeviceID.random()
            let token = DeviceToken.generate()
            try await database.connection.query(
                "INSERT INTO devices (id, name, token_hash) VALUES ($1, $2, $3)",
                [id.string, "device \(index)", DeviceToken.hash(token)])
            try await registry.write(device: id, tokenHash: DeviceToken.hash(token))
            devices.append((id, token))
        }
        return devices
    }

    /// Applies the migrations to the test database (the monitor does it when it starts).
    func migrate() async throws {
        try await Migrations.run(on: database.connection)
    }

    /// The application name of the session holding the leader lock in this test's database.
    func leader() async throws -> String? {
        try await database.connection.query(
            """
            SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE l.locktype = 'advisory' AND l.objid = $1 AND l.granted
              AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
            """, [String(PostgresLeaderLock.key)]
        ).scalar
    }

    func register(_ count: Int) async throws -> [(DeviceID, String)] {
        var devices: [(DeviceID, String)] = []
        for _ in 0..<count {
            let id = DeviceID.random()
            devices.append((id, try await registry.register(device: id)))
        }
        return devices
    }

    /// The device's row: status and version (nil when absent).
    func status(_ id: DeviceID) async throws -> (status: String, version: Int, lastHeartbeat: String?)? {
        let rows = try await database.connection.query("SELECT status, status_version, last_heartbeat FROM devices WHERE id = $1", [id.string])
        guard let row = rows.rows.first else { return nil }
        return (row[0] ?? "", Int(row[1] ?? "") ?? -1, row[2])
    }

    /// The device's status events in order: (to_status, status_version).
    func events(_ id: DeviceID) async throws -> [(status: String, version: Int)] {
        try await database.connection.query(
            "SELECT to_status, status_version FROM device_status_events WHERE device_id = $1 ORDER BY id", [id.string]
        )
        .rows.map { ($0[0] ?? "", Int($0[1] ?? "") ?? -1) }
    }

    /// Polls `condition` every 100 ms until it holds or `timeout` passes.
    func eventually(_ timeout: Duration, _ condition: () async throws -> Bool) async throws -> Bool {
        try await IntegrationTests.eventually(timeout, condition)
    }

    /// Kafka records of these devices, read from the beginning of both topics.
    func kafkaEvents(for devices: Set<String>, wait: Duration = .seconds(3)) async throws -> [[String: Any]] {
        let reader = try KafkaTopicReader(brokers: kafkaBrokers, topics: ["device.online", "device.offline"])
        let records = await reader.read(for: wait, idle: .seconds(1))
        return records.filter { devices.contains($0.key) }.compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.value.utf8)) as? [String: Any]
        }
    }

    func shutdown() async {
        await redis.shutdown()
        await server.stop()
        await database.drop()
    }
}

/// A monitor running in the background.
struct RunningMonitor {
    let instance: String
    let group: ServiceGroup
    let task: Task<Void, any Error>

    /// Graceful stop (SIGTERM path).
    func stop() async {
        await group.triggerGracefulShutdown()
        _ = await task.result
    }

    /// Abrupt stop: the tasks are cancelled, nothing is released politely.
    func kill() async {
        task.cancel()
        _ = await task.result
    }
}
