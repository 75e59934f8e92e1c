import Configuration
import HeartbeatDomain
import Logging
import RedisAdapter
import ServerSupport

/// Everything the gateway reads from its environment, parsed and validated once at start.
struct IngestConfiguration: Sendable {
    var host: String
    var port: Int
    var redis: RedisClient.Configuration
    var keys: KeySchema
    /// Heartbeats closer together than this are refused with `429` (zero disables the check).
    var minimumHeartbeatInterval: Duration
    /// Approximate cap of each bucket's history stream, so a stalled history writer cannot exhaust Redis memory.
    var historyStreamCap: Int
    /// Largest heartbeat body accepted.
    var maxBodyBytes: Int
    /// Idle timeout and connection cap of the device-facing port.
    var http: HTTPServerLimits
    /// `METRICS_PORT`: `/metrics` on a listener of its own (same host); `nil`: on the main listener.
    var metricsPort: Int?
    var logLevel: Logger.Level
    var logFormat: LogFormat

    init(reader: ConfigReader) throws(ConfigurationError) {
        host = try reader.text("http.host", default: "0.0.0.0")
        port = try reader.integer("http.port", default: 8080, in: 0...65535)  // 0: any free port
        redis = try reader.redisClientConfiguration()
        keys = try reader.keySchema()
        minimumHeartbeatInterval = try reader.seconds("heartbeat.min.interval.seconds", default: 1, allowZero: true)
        historyStreamCap = try reader.integer("history.stream.max.length", default: 1_000_000, in: 1_000...1_000_000_000)
        maxBodyBytes = 16 * 1024
        http = try reader.httpServerLimits()
        metricsPort = try reader.optionalInteger("metrics.port", in: 0...65535)
        logLevel = try reader.logLevel()
        logFormat = try reader.logFormat()
    }
}
