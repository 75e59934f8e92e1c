import Configuration
import Foundation
import Logging

/// Typed, validated reads. Every value is read as text and parsed here, so a malformed value
/// stops the process with a message naming the variable instead of silently becoming the default.
extension ConfigReader {
    /// The environment variable a dotted key maps to (`offline.after.seconds` → `OFFLINE_AFTER_SECONDS`).
    public static func variableName(_ key: String) -> String {
        key.uppercased().replacingOccurrences(of: ".", with: "_")
    }

    private func text(_ key: String, isSecret: Bool = false) -> String? {
        guard let value = string(forKey: ConfigKey(key), isSecret: isSecret)?.trimmingCharacters(in: .whitespaces),
            !value.isEmpty
        else { return nil }
        return value
    }

    /// A duration in seconds, fractions allowed (`0.5`), strictly positive unless `allowZero`.
    public func seconds(_ key: String, default fallback: Double, allowZero: Bool = false) throws(ConfigurationError) -> Duration {
        guard let raw = text(key) else { return .seconds(fallback) }
        guard let value = Double(raw), value.isFinite, allowZero ? value >= 0 : value > 0 else {
            throw ConfigurationError(variable: Self.variableName(key), value: raw,
                                     reason: "expected a \(allowZero ? "non-negative" : "positive") number of seconds, e.g. 60 or 0.5")
        }
        return .milliseconds(Int64((value * 1000).rounded()))
    }

    /// An integer within `range`.
    public func integer(_ key: String, default fallback: Int, in range: ClosedRange<Int>) throws(ConfigurationError) -> Int {
        guard let raw = text(key) else { return fallback }
        guard let value = Int(raw), range.contains(value) else {
            throw ConfigurationError(variable: Self.variableName(key), value: raw,
                                     reason: "expected an integer from \(range.lowerBound) to \(range.upperBound)")
        }
        return value
    }

    /// A fraction within `0...1`.
    public func fraction(_ key: String, default fallback: Double) throws(ConfigurationError) -> Double {
        guard let raw = text(key) else { return fallback }
        guard let value = Double(raw), value >= 0, value <= 1 else {
            throw ConfigurationError(variable: Self.variableName(key), value: raw, reason: "expected a number from 0 to 1")
        }
        return value
    }

    /// A string, or `fallback` when unset or empty.
    public func text(_ key: String, default fallback: String) -> String {
        text(key) ?? fallback
    }

    /// An optional string (`nil` when unset or empty).
    public func optionalText(_ key: String, isSecret: Bool = false) -> String? {
        text(key, isSecret: isSecret)
    }

    /// `LOG_LEVEL`: trace, debug, info, notice, warning, error or critical.
    public func logLevel() throws(ConfigurationError) -> Logger.Level {
        let raw = text("log.level", default: "info")
        guard let level = Logger.Level(rawValue: raw.lowercased()) else {
            throw ConfigurationError(variable: "LOG_LEVEL", value: raw,
                                     reason: "expected one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return level
    }

    /// The Redis client settings: `REDIS_URL`, `REDIS_TIMEOUT_SECONDS`, `REDIS_CONNECTIONS`.
    public func redisClientConfiguration() throws(ConfigurationError) -> RedisClient.Configuration {
        let url = text("redis.url", default: "redis://127.0.0.1:6379")
        guard let endpoint = RedisEndpoint(url: url) else {
            throw ConfigurationError(variable: "REDIS_URL", value: Self.redactingPassword(url), reason: "expected redis://[[user]:password@]host[:port][/db]")
        }
        return RedisClient.Configuration(
            endpoint: endpoint,
            timeout: try seconds("redis.timeout.seconds", default: 1),
            connections: try integer("redis.connections", default: 1, in: 1...64)
        )
    }

    /// `url` with the password of its `user:password@` part replaced by `***`, for messages.
    /// Malformed URLs too: whatever stands between the first `:` of the credentials and the last `@`.
    public static func redactingPassword(_ url: String) -> String {
        guard let at = url.lastIndex(of: "@") else { return url }
        let start = url.range(of: "://").map(\.upperBound) ?? url.startIndex
        guard start < at, let colon = url[start..<at].firstIndex(of: ":") else { return url }
        return String(url[..<url.index(after: colon)]) + "***" + String(url[at...])
    }

    /// `BUCKETS`: the Redis key schema.
    public func keySchema() throws(ConfigurationError) -> KeySchema {
        KeySchema(buckets: try integer("buckets", default: 16, in: 1...16384))
    }
}
