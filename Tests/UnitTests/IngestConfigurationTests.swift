import Configuration
import RedisAdapter
import ServerSupport
import Testing

@testable import Ingest

@Suite struct IngestConfigurationTests {
    func configuration(_ environment: [String: String]) throws(ConfigurationError) -> IngestConfiguration {
        try IngestConfiguration(reader: ConfigReader(provider: EnvironmentVariablesProvider(environmentVariables: environment)))
    }

    @Test func defaultsMatchTheDesign() throws {
        let config = try configuration([:])
        #expect(config.host == "0.0.0.0")
        #expect(config.port == 8080)
        #expect(config.redis.endpoint == RedisEndpoint(host: "127.0.0.1", port: 6379))
        #expect(config.redis.timeout == .seconds(1))
        #expect(config.keys.buckets == 16)
        #expect(config.minimumHeartbeatInterval == .seconds(1))
        #expect(config.maxBodyBytes == 16 * 1024)
        #expect(config.http.idleTimeout == .seconds(30))
        #expect(config.http.maxConnections == HTTPServerLimits.defaultMaxConnections)
        #expect(config.logLevel == .info)
        #expect(config.redis.clusterNodes == nil)
    }

    @Test func clusterSeedNodesSwitchToClusterModeKeepingTheURLsCredentials() throws {
        let config = try configuration([
            "REDIS_CLUSTER_NODES": "10.0.0.1:7001, 10.0.0.2:7002,redis-3.internal:7003", "REDIS_URL": "redis://:pw@ignored:1",
        ])
        #expect(config.redis.clusterNodes?.map(\.description) == ["10.0.0.1:7001", "10.0.0.2:7002", "redis-3.internal:7003"])
        #expect(config.redis.endpoint.password == "pw")
        // a cluster has database 0 only
        #expect(throws: ConfigurationError.self) { try configuration(["REDIS_CLUSTER_NODES": "h:1", "REDIS_URL": "redis://h:1/2"]) }
    }

    @Test func aMalformedURLIsReportedWithoutItsPassword() throws {
        do {
            _ = try configuration(["REDIS_URL": "rediss//user:s3cret@cache:6379"])
            Issue.record("a malformed REDIS_URL was accepted")
        } catch {
            #expect(!error.description.contains("s3cret"), "\(error)")
            #expect(error.description.contains("user:***@cache"), "\(error)")
        }
        #expect(ConfigReader.redactingPassword("postgres://hb:pw@db:5432/hb") == "postgres://hb:***@db:5432/hb")
        #expect(ConfigReader.redactingPassword("postgres://hb@db/hb") == "postgres://hb@db/hb")
        #expect(ConfigReader.redactingPassword("redis://:pw@cache") == "redis://:***@cache")
    }

    @Test func readsTheDesignNames() throws {
        let config = try configuration([
            "HTTP_HOST": "127.0.0.1", "HTTP_PORT": "9000", "REDIS_URL": "redis://10.0.0.5:7000/3", "BUCKETS": "64",
            "REDIS_TIMEOUT_SECONDS": "0.25", "HEARTBEAT_MIN_INTERVAL_SECONDS": "0", "LOG_LEVEL": "DEBUG",
        ])
        #expect(config.host == "127.0.0.1")
        #expect(config.port == 9000)
        #expect(config.redis.endpoint == RedisEndpoint(host: "10.0.0.5", port: 7000, database: 3))
        #expect(config.redis.timeout == .milliseconds(250))
        #expect(config.keys.buckets == 64)
        #expect(config.minimumHeartbeatInterval == .zero)
        #expect(config.logLevel == .debug)
    }

    @Test(arguments: [
        ("HTTP_PORT", "eighty"), ("HTTP_PORT", "70000"), ("REDIS_URL", "localhost:6379"), ("BUCKETS", "0"),
        ("BUCKETS", "1.5"), ("REDIS_TIMEOUT_SECONDS", "-1"), ("REDIS_TIMEOUT_SECONDS", "0"), ("LOG_LEVEL", "loud"),
        ("HEARTBEAT_MIN_INTERVAL_SECONDS", "soon"), ("HTTP_IDLE_TIMEOUT_SECONDS", "0"), ("HTTP_MAX_CONNECTIONS", "none"),
        ("REDIS_CLUSTER_NODES", "h"), ("REDIS_CLUSTER_NODES", "h:1,h:x"), ("REDIS_CLUSTER_NODES", ","),
    ])
    func rejectsBadValuesNamingTheVariable(variable: String, value: String) {
        do {
            _ = try configuration([variable: value])
            Issue.record("\(variable)=\(value) was accepted")
        } catch {
            #expect(error.variable == variable)
            #expect(error.description.contains(variable))
        }
    }

    @Test func fractionalSecondsAreAccepted() throws {
        let reader = ConfigReader(
            provider: EnvironmentVariablesProvider(environmentVariables: ["OFFLINE_AFTER_SECONDS": "2", "SCAN_INTERVAL_SECONDS": "0.5"]))
        #expect(try reader.seconds("offline.after.seconds", default: 600) == .seconds(2))
        #expect(try reader.seconds("scan.interval.seconds", default: 60) == .milliseconds(500))
        #expect(try reader.seconds("unset.seconds", default: 60) == .seconds(60))
    }
}
