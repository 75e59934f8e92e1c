import Configuration
import Foundation
import HeartbeatDomain
import Logging
import RedisAdapter
import ServerSupport

/// Everything the monitor reads from its environment, parsed and validated once at start.
struct MonitorConfiguration: Sendable {
    var redis: RedisClient.Configuration
    var keys: KeySchema
    var postgresURL: String
    var kafkaBrokers: String
    /// Extra librdkafka properties (`KAFKA_PROPERTIES=k=v,k=v`: TLS, SASL), over the producer's own.
    var kafkaProperties: [String: String]
    /// The Kafka topic of each event type (`device.online` and `device.offline` by default).
    var kafkaTopics: [String: String]
    var adminHost: String
    var adminPort: Int
    var adminToken: String
    var offlineAfter: Duration
    var scanInterval: Duration
    var storm: StormGuard.Settings
    var historyRetentionDays: Int
    /// Alertmanager's base URL (`ALERT_WEBHOOK_URL`); alerts are off when unset.
    var alertWebhookURL: String?
    /// How often firing alerts are posted again (`ALERT_RESEND_SECONDS`).
    var alertResendInterval: Duration
    /// Names this instance in consumer groups and logs.
    var instanceID: String
    /// Most devices one offline-scan script call moves.
    var scanBatchSize: Int
    /// Transitions read and applied per bucket per batch.
    var applyBatchSize: Int
    /// Buckets whose transitions are applied at once, each on its own PostgreSQL connection.
    var applyParallelism: Int
    /// Sleep of the applier and the outbox relay when they find nothing to do.
    var pollInterval: Duration
    /// The history writer's wait for its next poll after a round without a full batch:
    /// ``pollInterval``, but never under ``historyPollFloor``.
    var historyPollInterval: Duration { max(pollInterval, Self.historyPollFloor) }
    /// Each poll pays per bucket a leader check and a `COPY` in PostgreSQL, seven stream commands in
    /// Redis and a thread hand-off for each. At 150 ms instead of 100 the batches are 1.5 times as
    /// large: ~5% more heartbeats/s on the shared two cores (monitor 2.9–3.3 µs per
    /// heartbeat against 3.2–4.7, p99 4.35–4.67 ms against 4.2–4.9; runs alternating, wrk -c64,
    /// 10,000 devices). At 200 ms and more p99 rose past 5 ms in some runs (bigger bursts of
    /// `COPY` work). History reaches PostgreSQL up to 50 ms later; status changes are not delayed.
    static let historyPollFloor: Duration = .milliseconds(150)
    /// How often the leader compares PostgreSQL's online devices with Redis's online sets.
    var reconcileInterval: Duration
    /// A leader that cannot reach Redis this long gives up the lock.
    var leaderRedisTimeout: Duration
    /// Idle timeout and connection cap of the ops API.
    var http: HTTPServerLimits
    var retention: RetentionPolicy
    /// Outbox rows read per topic per relay round.
    var outboxBatchSize: Int
    /// `METRICS_PORT`: `/metrics` on a listener of its own (same host); `nil`: on the main listener.
    var metricsPort: Int?
    var logLevel: Logger.Level
    var logFormat: LogFormat

    init(reader: ConfigReader) throws(ConfigurationError) {
        redis = try reader.redisClientConfiguration()
        keys = try reader.keySchema()
        postgresURL = try reader.text("postgres.url", default: "postgres://heartbeat@127.0.0.1:5432/heartbeat", isSecret: true)
        guard postgresURL.hasPrefix("postgres://") || postgresURL.hasPrefix("postgresql://") else {
            throw ConfigurationError(
                variable: "POSTGRES_URL", value: ConfigReader.redactingPassword(postgresURL),
                reason: "expected postgres://user[:password]@host[:port]/database")
        }
        kafkaBrokers = try reader.text("kafka.brokers", default: "127.0.0.1:9092")
        kafkaProperties = try reader.keyValueList("kafka.properties", isSecret: true)
        kafkaTopics = [
            "device.online": try reader.kafkaTopic("kafka.topic.online", default: "device.online"),
            "device.offline": try reader.kafkaTopic("kafka.topic.offline", default: "device.offline"),
        ]
        adminHost = try reader.text("admin.host", default: "127.0.0.1")
        adminPort = try reader.integer("admin.port", default: 8081, in: 0...65535)
        guard let token = try reader.optionalText("admin.token", isSecret: true) else {
            throw ConfigurationError(variable: "ADMIN_TOKEN", value: nil, reason: "is required: the ops API refuses to run without a bearer token")
        }
        guard token.count >= 16 else {
            throw ConfigurationError(variable: "ADMIN_TOKEN", value: nil, reason: "must be at least 16 characters")
        }
        adminToken = token
        offlineAfter = try reader.seconds("offline.after.seconds", default: 600)
        scanInterval = try reader.seconds("scan.interval.seconds", default: 60)
        storm = StormGuard.Settings(
            minDevices: try reader.integer("mass.offline.min.devices", default: 50, in: 1...100_000_000),
            fraction: try reader.fraction("mass.offline.fraction", default: 0.5),
            maxHold: try reader.seconds("mass.offline.hold.seconds", default: 900))
        historyRetentionDays = try reader.integer("history.retention.days", default: 30, in: 1...3650)
        alertWebhookURL = try reader.optionalText("alert.webhook.url", isSecret: true)
        if let url = alertWebhookURL, !(url.hasPrefix("http://") || url.hasPrefix("https://")) {
            throw ConfigurationError(
                variable: "ALERT_WEBHOOK_URL", value: ConfigReader.redactingPassword(url),
                reason: "expected Alertmanager's base URL, http(s)://host:port")
        }
        alertResendInterval = try reader.seconds("alert.resend.seconds", default: 60)
        instanceID = try reader.text(
            "monitor.instance.id", default: "\(ProcessInfo.processInfo.hostName)-\(ProcessInfo.processInfo.processIdentifier)")
        scanBatchSize = try reader.integer("scan.batch.size", default: 2000, in: 1...100_000)
        applyBatchSize = try reader.integer("apply.batch.size", default: 5000, in: 1...100_000)
        applyParallelism = try reader.integer("apply.parallelism", default: 2, in: 1...64)
        pollInterval = try reader.seconds("monitor.poll.interval.seconds", default: 0.1)
        reconcileInterval = try reader.seconds("reconcile.interval.seconds", default: 300)
        leaderRedisTimeout = try reader.seconds("leader.redis.timeout.seconds", default: 10)
        http = try reader.httpServerLimits()
        outboxBatchSize = try reader.integer("outbox.batch.size", default: 2000, in: 1...100_000)
        retention = RetentionPolicy(
            outbox: .seconds(3600 * (try reader.integer("outbox.retention.hours", default: 168, in: 1...87_600))),
            events: .seconds(86_400 * (try reader.integer("events.retention.days", default: 90, in: 1...36_500))),
            keepsUnalerted: alertWebhookURL != nil)
        metricsPort = try reader.optionalInteger("metrics.port", in: 0...65535)
        logLevel = try reader.logLevel()
        logFormat = try reader.logFormat()
    }
}
