import Configuration
import Foundation
import HeartbeatDomain
import Logging
import RedisAdapter

/// Typed, validated reads. Every value is read as text and parsed here, so a malformed value
/// stops the process with a message naming the variable instead of silently becoming the default.
extension ConfigReader {
    /// The environment variable a dotted key maps to (`offline.after.seconds` → `OFFLINE_AFTER_SECONDS`).
    public static func variableName(_ key: String) -> String {
        key.uppercased().replacingOccurrences(of: ".", with: "_")
    }

    /// The value of `key`, or of the file `<KEY>_FILE` names (a secret mounted as a file: the
    /// file's content with surrounding white space and line breaks removed); `nil` when neither is
    /// set or the value is empty. Both set is refused, so a stale variable cannot win silently.
    private func text(_ key: String, isSecret: Bool = false) throws(ConfigurationError) -> String? {
        let direct = string(forKey: ConfigKey(key), isSecret: isSecret)?.trimmingCharacters(in: .whitespaces)
        if let path = string(forKey: ConfigKey(key + ".file"))?.trimmingCharacters(in: .whitespaces), !path.isEmpty {
            guard direct?.isEmpty ?? true else {
                throw ConfigurationError(
                    variable: Self.variableName(key + ".file"), value: path,
                    reason: "is set together with \(Self.variableName(key)): set one of them")
            }
            guard let data = FileManager.default.contents(atPath: path), let content = String(data: data, encoding: .utf8) else {
                throw ConfigurationError(variable: Self.variableName(key + ".file"), value: path, reason: "names a file that cannot be read")
            }
            let value = content.trimmingCharacters(in: .whitespacesAndNewlines)
            return value.isEmpty ? nil : value
        }
        guard let direct, !direct.isEmpty else { return nil }
        return direct
    }

    /// A duration in seconds, fractions allowed (`0.5`), strictly positive unless `allowZero`.
    public func seconds(_ key: String, default fallback: Double, allowZero: Bool = false) throws(ConfigurationError) -> Duration {
        guard let raw = try text(key) else { return .seconds(fallback) }
        guard let value = Double(raw), value.isFinite, allowZero ? value >= 0 : value > 0 else {
            throw ConfigurationError(
                variable: Self.variableName(key), value: raw,
                reason: "expected a \(allowZero ? "non-negative" : "positive") number of seconds, e.g. 60 or 0.5")
        }
        return .milliseconds(Int64((value * 1000).rounded()))
    }

    /// An integer within `range`.
    public func integer(_ key: String, default fallback: Int, in range: ClosedRange<Int>) throws(ConfigurationError) -> Int {
        try optionalInteger(key, in: range) ?? fallback
    }

    /// An integer within `range`, or `nil` when unset.
    public func optionalInteger(_ key: String, in range: ClosedRange<Int>) throws(ConfigurationError) -> Int? {
        guard let raw = try text(key) else { return nil }
        guard let value = Int(raw), range.contains(value) else {
            throw ConfigurationError(
                variable: Self.variableName(key), value: raw,
                reason: "expected an integer from \(range.lowerBound) to \(range.upperBound)")
        }
        return value
    }

    /// A fraction within `0...1`.
    public func fraction(_ key: String, default fallback: Double) throws(ConfigurationError) -> Double {
        guard let raw = try text(key) else { return fallback }
        guard let value = Double(raw), value >= 0, value <= 1 else {
            throw ConfigurationError(variable: Self.variableName(key), value: raw, reason: "expected a number from 0 to 1")
        }
        return value
    }

    /// A string, or `fallback` when unset or empty. `<KEY>_FILE` may name a file holding it.
    public func text(_ key: String, default fallback: String, isSecret: Bool = false) throws(ConfigurationError) -> String {
        try text(key, isSecret: isSecret) ?? fallback
    }

    /// An optional string (`nil` when unset or empty). `<KEY>_FILE` may name a file holding it.
    public func optionalText(_ key: String, isSecret: Bool = false) throws(ConfigurationError) -> String? {
        try text(key, isSecret: isSecret)
    }

    /// `LOG_LEVEL`: trace, debug, info, notice, warning, error or critical.
    public func logLevel() throws(ConfigurationError) -> Logger.Level {
        let raw = try text("log.level", default: "info")
        guard let level = Logger.Level(rawValue: raw.lowercased()) else {
            throw ConfigurationError(
                variable: "LOG_LEVEL", value: raw,
                reason: "expected one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return level
    }

    /// `k=v,k=v` (commas or line breaks between pairs), e.g. `KAFKA_PROPERTIES`; empty when unset.
    public func keyValueList(_ key: String, isSecret: Bool = false) throws(ConfigurationError) -> [String: String] {
        guard let raw = try text(key, isSecret: isSecret) else { return [:] }
        var pairs: [String: String] = [:]
        for item in raw.split(whereSeparator: { $0 == "," || $0.isNewline }) {
            let pair = item.trimmingCharacters(in: .whitespaces)
            guard !pair.isEmpty else { continue }
            guard let equals = pair.firstIndex(of: "="), equals != pair.startIndex else {
                throw ConfigurationError(
                    variable: Self.variableName(key), value: isSecret ? nil : raw,
                    reason: "expected name=value pairs separated by commas; '\(pair.prefix(while: { $0 != "=" }))' has no value")
            }
            pairs[String(pair[..<equals])] = String(pair[pair.index(after: equals)...])
        }
        return pairs
    }

    /// A Kafka topic name: 1 to 249 of `a-z A-Z 0-9 . _ -`, not `.` or `..`.
    public func kafkaTopic(_ key: String, default fallback: String) throws(ConfigurationError) -> String {
        let name = try text(key, default: fallback)
        let legal = name.utf8.allSatisfy { byte in
            byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
                || (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte)
        }
        guard legal, name.utf8.count <= 249, name != ".", name != ".." else {
            throw ConfigurationError(
                variable: Self.variableName(key), value: name,
                reason: "expected a Kafka topic name: up to 249 letters, digits, '.', '_' or '-'")
        }
        return name
    }

    /// `LOG_FORMAT`: `json` or `text`; by default `json` when standard output is not a terminal.
    public func logFormat() throws(ConfigurationError) -> LogFormat {
        guard let raw = try text("log.format") else { return isatty(STDOUT_FILENO) == 1 ? .text : .json }
        guard let format = LogFormat(rawValue: raw.lowercased()) else {
            throw ConfigurationError(variable: "LOG_FORMAT", value: raw, reason: "expected json or text")
        }
        return format
    }

    /// The Redis client settings: `REDIS_URL`, `REDIS_TIMEOUT_SECONDS`, `REDIS_CONNECTIONS`, and
    /// `REDIS_CLUSTER_NODES` (seed nodes `host:port,host:port,…`: cluster mode, `REDIS_URL` then
    /// gives only the credentials; `REDIS_CONNECTIONS` is per node).
    public func redisClientConfiguration() throws(ConfigurationError) -> RedisClient.Configuration {
        let url = try text("redis.url", default: "redis://127.0.0.1:6379", isSecret: true)
        guard let endpoint = RedisEndpoint(url: url) else {
            throw ConfigurationError(
                variable: "REDIS_URL", value: Self.redactingPassword(url), reason: "expected redis://[[user]:password@]host[:port][/db]")
        }
        var clusterNodes: [RedisClusterMap.Node]?
        if let list = try text("redis.cluster.nodes") {
            let nodes = list.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            guard !nodes.isEmpty, nodes.allSatisfy({ RedisClusterMap.Node($0) != nil }) else {
                throw ConfigurationError(variable: "REDIS_CLUSTER_NODES", value: list, reason: "expected host:port,host:port,… (seed nodes)")
            }
            guard endpoint.database == 0 else {
                throw ConfigurationError(
                    variable: "REDIS_URL", value: Self.redactingPassword(url),
                    reason: "names database \(endpoint.database): a Redis Cluster has only database 0")
            }
            clusterNodes = nodes.compactMap { RedisClusterMap.Node($0) }
        }
        return RedisClient.Configuration(
            endpoint: endpoint,
            timeout: try seconds("redis.timeout.seconds", default: 1),
            connections: try integer("redis.connections", default: 1, in: 1...64),
            clusterNodes: clusterNodes
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
