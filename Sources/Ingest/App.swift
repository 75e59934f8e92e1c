import Configuration
import Foundation
import Hummingbird
import Logging
import RedisAdapter
import ServerSupport

/// `heartbeat-ingest`: the device-facing heartbeat gateway. Stateless; configure with environment
/// variables (see README.md); stops gracefully on SIGTERM or SIGINT.
@main
struct App {
    static func main() async throws {
        if ProcessStartup.helpRequested(usage) { return }
        if ProcessStartup.versionRequested("heartbeat-ingest") { return }
        let configuration = ProcessStartup.configuration("heartbeat-ingest") { reader throws(ConfigurationError) in
            try IngestConfiguration(reader: reader)
        }
        let logger = ProcessStartup.logger("heartbeat-ingest", level: configuration.logLevel, format: configuration.logFormat)
        let app = buildApplication(configuration: configuration, metricsRegistry: MetricsBootstrap.registry, logger: logger)
        do {
            try await app.runService()
        } catch {
            ProcessStartup.stopOnDeploymentMismatch("heartbeat-ingest", error)
            throw error
        }
    }

    static let usage = """
        heartbeat-ingest: device heartbeat gateway (HTTP → Redis)

        Configured through environment variables:
          HTTP_HOST, HTTP_PORT                 listen address (default 0.0.0.0:8080)
          REDIS_URL                            redis://[[user]:password@]host[:port][/db] (default redis://127.0.0.1:6379)
          REDIS_TIMEOUT_SECONDS                connect and reply timeout (default 1)
          REDIS_CONNECTIONS                    pipelined Redis connections (default 1)
          BUCKETS                              Redis key buckets, fixed per deployment (default 16)
          HEARTBEAT_MIN_INTERVAL_SECONDS       closer heartbeats get 429 (default 1, 0 = off)
          HISTORY_STREAM_MAX_LENGTH            cap of each bucket's history stream (default 1000000)
          HTTP_IDLE_TIMEOUT_SECONDS            idle or half-sent connections closed after (default 30)
          HTTP_MAX_CONNECTIONS                 open connections accepted at once (default: fd limit - 128, ≤ 10000)
          METRICS_PORT                         /metrics on a listener of its own, off the main port (default: on the main port)
          LOG_LEVEL                            trace … critical (default info)
          LOG_FORMAT                           json lines on stdout or text on stderr (default: json unless stdout is a terminal)

        Any variable may instead be read from a file: NAME_FILE=/path (for secrets mounted as files).
        --version prints the version; --help this text.
        """
}
