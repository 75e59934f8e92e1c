import Configuration
import HeartbeatDomain
import PostgresAdapter
import RedisAdapter
import ServerSupport
import Testing

@testable import Monitor

@Suite struct MonitorConfigurationTests {
    func configuration(_ environment: [String: String]) throws(ConfigurationError) -> MonitorConfiguration {
        try MonitorConfiguration(reader: ConfigReader(provider: EnvironmentVariablesProvider(environmentVariables: environment)))
    }

    @Test func refusesToStartWithoutAnAdminToken() {
        #expect(
            throws: ConfigurationError(variable: "ADMIN_TOKEN", value: nil, reason: "is required: the ops API refuses to run without a bearer token")
        ) {
            try configuration([:])
        }
        #expect(throws: ConfigurationError.self) { try configuration(["ADMIN_TOKEN": "short"]) }
    }

    @Test func defaultsMatchTheDesign() throws {
        let config = try configuration(["ADMIN_TOKEN": "0123456789abcdef"])
        #expect(config.postgresURL == "postgres://heartbeat@127.0.0.1:5432/heartbeat")
        #expect(config.kafkaBrokers == "127.0.0.1:9092")
        #expect(config.adminHost == "127.0.0.1" && config.adminPort == 8081)
        #expect(config.offlineAfter == .seconds(600))
        #expect(config.scanInterval == .seconds(60))
        #expect(config.keys.buckets == 16)
        #expect(config.storm == .init(minDevices: 50, fraction: 0.5, maxHold: .seconds(900)))
        #expect(config.historyRetentionDays == 30)
        #expect(config.alertWebhookURL == nil)
    }

    @Test func scaledDownDurationsForTests() throws {
        let config = try configuration(["ADMIN_TOKEN": "0123456789abcdef", "OFFLINE_AFTER_SECONDS": "2", "SCAN_INTERVAL_SECONDS": "0.5"])
        #expect(config.offlineAfter == .seconds(2))
        #expect(config.scanInterval == .milliseconds(500))
    }

    @Test func theHistoryWriterPollsNoMoreOftenThanEvery150Milliseconds() throws {
        let base = ["ADMIN_TOKEN": "0123456789abcdef"]
        let standard = try configuration(base)
        #expect(standard.pollInterval == .milliseconds(100))
        #expect(standard.historyPollInterval == .milliseconds(150))
        #expect(try configuration(base.merging(["MONITOR_POLL_INTERVAL_SECONDS": "0.5"]) { $1 }).historyPollInterval == .milliseconds(500))
        #expect(try configuration(base.merging(["MONITOR_POLL_INTERVAL_SECONDS": "0.02"]) { $1 }).historyPollInterval == .milliseconds(150))
    }

    @Test(arguments: [
        ("POSTGRES_URL", "mysql://x"), ("MASS_OFFLINE_FRACTION", "1.5"), ("MASS_OFFLINE_MIN_DEVICES", "0"),
        ("OFFLINE_AFTER_SECONDS", "ten"), ("SCAN_INTERVAL_SECONDS", "0"), ("HISTORY_RETENTION_DAYS", "0"),
    ])
    func rejectsBadValues(variable: String, value: String) {
        do {
            _ = try configuration(["ADMIN_TOKEN": "0123456789abcdef", variable: value])
            Issue.record("\(variable)=\(value) accepted")
        } catch {
            #expect(error.variable == variable)
        }
    }
}
