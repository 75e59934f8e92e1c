import Configuration
import Foundation
import Hummingbird
import Logging
import RedisAdapter
import ServerSupport

/// `heartbeat-monitor`: offline detection, durable status in PostgreSQL and events on Kafka.
/// Run one or more; a PostgreSQL advisory lock elects the active one. Stops gracefully on SIGTERM.
@main
struct App {
    static func main() async throws {
        if ProcessStartup.helpRequested(usage) { return }
        if ProcessStartup.versionRequested("heartbeat-monitor") { return }
        let configuration = ProcessStartup.configuration("heartbeat-monitor") { reader throws(ConfigurationError) in
            try MonitorConfiguration(reader: reader)
        }
        let logger = ProcessStartup.logger("heartbeat-monitor", level: configuration.logLevel, format: configuration.logFormat)
        let app = await startOrStop(logger: logger) {
            try await buildMonitor(configuration: configuration, metricsRegistry: MetricsBootstrap.registry, logger: logger)
        }
        do {
            try await app.runService()
        } catch {
            ProcessStartup.stopOnDeploymentMismatch("heartbeat-monitor", error)
            throw error
        }
    }

    /// Builds the application, or stops the process with a message when that fails (PostgreSQL
    /// not reachable within its wait, say).
    static func startOrStop<A: ApplicationProtocol>(logger: Logger, _ build: @Sendable () async throws -> A) async -> A {
        do {
            return try await build()
        } catch {
            ProcessStartup.stopOnStartFailure("heartbeat-monitor", error, logger: logger)
        }
    }

    static let usage = """
        heartbeat-monitor: offline detection, status in PostgreSQL, events on Kafka

        Configured through environment variables:
          ADMIN_TOKEN (required)             bearer token of the ops API (16+ characters)
          ADMIN_HOST, ADMIN_PORT             ops API address (default 127.0.0.1:8081)
          REDIS_URL, POSTGRES_URL            stores (defaults redis://127.0.0.1:6379, postgres://heartbeat@127.0.0.1:5432/heartbeat)
          REDIS_TIMEOUT_SECONDS, REDIS_CONNECTIONS
                                             Redis connect/reply timeout, pipelined connections (defaults 1, 1)
          KAFKA_BROKERS                      host:port[,…] (default 127.0.0.1:9092)
          KAFKA_PROPERTIES                   extra librdkafka properties, k=v,k=v (TLS, SASL)
          KAFKA_TOPIC_ONLINE, KAFKA_TOPIC_OFFLINE
                                             event topics (defaults device.online, device.offline)
          OFFLINE_AFTER_SECONDS              silence before a device is offline (default 600)
          SCAN_INTERVAL_SECONDS              offline scan period (default 60)
          BUCKETS                            Redis buckets, as the gateway's (default 16)
          MASS_OFFLINE_FRACTION, MASS_OFFLINE_MIN_DEVICES, MASS_OFFLINE_HOLD_SECONDS
                                             storm guard (defaults 0.5, 50, 900)
          MONITOR_INSTANCE_ID                consumer name (default host-pid)
          MONITOR_POLL_INTERVAL_SECONDS      idle pause of applier, history writer (at least 0.15), relay (default 0.1)
          SCAN_BATCH_SIZE, APPLY_BATCH_SIZE  per script call / per apply batch (defaults 2000, 5000)
          APPLY_PARALLELISM                  buckets applied at once, a connection each (default 2)
          OUTBOX_BATCH_SIZE                  outbox rows per topic per round (default 2000)
          RECONCILE_INTERVAL_SECONDS         PostgreSQL/Redis online reconciliation period (default 300)
          LEADER_REDIS_TIMEOUT_SECONDS       a leader without Redis this long gives up the lock (default 10)
          OUTBOX_RETENTION_HOURS             published outbox rows kept (default 168)
          EVENTS_RETENTION_DAYS              status events kept (default 90)
          HISTORY_RETENTION_DAYS             heartbeat history kept (default 30)
          HTTP_IDLE_TIMEOUT_SECONDS          ops API idle connections closed after (default 30)
          HTTP_MAX_CONNECTIONS               ops API open connections (default: fd limit - 128, ≤ 10000)
          ALERT_WEBHOOK_URL                  Alertmanager base URL, e.g. http://alertmanager:9093 (alerts off when unset)
          ALERT_RESEND_SECONDS               firing alerts posted again this often (default 60; valid for 4x that)
          METRICS_PORT                       /metrics on a listener of its own, off the main port (default: on the main port)
          LOG_LEVEL                          trace … critical (default info)
          LOG_FORMAT                         json lines on stdout or text on stderr (default: json unless stdout is a terminal)

        Any variable may instead be read from a file: NAME_FILE=/path (for secrets mounted as files).
        --version prints the version; --help this text.
        """
}
