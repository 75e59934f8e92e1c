import Configuration
import Foundation
import Logging
import RedisAdapter
import ServerSupport
import Testing

@testable import Ingest
@testable import Monitor

/// Settings for production: secrets from files, Kafka client properties, log format, version.
@Suite struct ProductionSettingsTests {
    static func reader(_ environment: [String: String]) -> ConfigReader {
        ConfigReader(provider: EnvironmentVariablesProvider(environmentVariables: environment))
    }

    static func monitor(_ environment: [String: String]) throws(ConfigurationError) -> MonitorConfiguration {
        try MonitorConfiguration(reader: reader(environment))
    }

    static func temporaryFile(_ content: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("secret-\(UUID().uuidString)").path
        try content.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func secretsAreReadFromFilesNamedByTheFileVariables() throws {
        let token = try Self.temporaryFile("from-a-file-0123456789\n")
        let url = try Self.temporaryFile("postgres://hb:s3cret@db:5432/hb\n")
        defer {
            try? FileManager.default.removeItem(atPath: token)
            try? FileManager.default.removeItem(atPath: url)
        }
        let config = try Self.monitor(["ADMIN_TOKEN_FILE": token, "POSTGRES_URL_FILE": url])
        #expect(config.adminToken == "from-a-file-0123456789")
        #expect(config.postgresURL == "postgres://hb:s3cret@db:5432/hb")
    }

    @Test func aMissingSecretFileOrBothFormsAreRefusedByName() throws {
        do {
            _ = try Self.monitor(["ADMIN_TOKEN_FILE": "/nonexistent/token"])
            Issue.record("an unreadable ADMIN_TOKEN_FILE was accepted")
        } catch {
            #expect(error.variable == "ADMIN_TOKEN_FILE")
            #expect(error.description.contains("cannot be read"))
        }
        let token = try Self.temporaryFile("from-a-file-0123456789")
        defer { try? FileManager.default.removeItem(atPath: token) }
        do {
            _ = try Self.monitor(["ADMIN_TOKEN_FILE": token, "ADMIN_TOKEN": "from-the-environment-0123"])
            Issue.record("ADMIN_TOKEN and ADMIN_TOKEN_FILE together were accepted")
        } catch {
            #expect(error.variable == "ADMIN_TOKEN_FILE")
        }
    }

    @Test func kafkaPropertiesArePassedThrough() throws {
        let config = try Self.monitor([
            "ADMIN_TOKEN": "0123456789abcdef",
            "KAFKA_PROPERTIES": "security.protocol=SASL_SSL, sasl.mechanism=PLAIN,sasl.username=hb,sasl.password=a=b",
        ])
        #expect(
            config.kafkaProperties == [
                "security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN", "sasl.username": "hb", "sasl.password": "a=b",
            ])
        #expect(try Self.monitor(["ADMIN_TOKEN": "0123456789abcdef"]).kafkaProperties.isEmpty)
        do {
            _ = try Self.monitor(["ADMIN_TOKEN": "0123456789abcdef", "KAFKA_PROPERTIES": "security.protocol=SSL,sasl.password"])
            Issue.record("a property without a value was accepted")
        } catch {
            #expect(error.variable == "KAFKA_PROPERTIES")
            #expect(error.value == nil, "the properties may hold a password: not echoed")
        }
    }

    @Test func kafkaTopicNamesAreConfigurableAndChecked() throws {
        #expect(
            try Self.monitor(["ADMIN_TOKEN": "0123456789abcdef"]).kafkaTopics == [
                "device.online": "device.online", "device.offline": "device.offline",
            ])
        let custom = try Self.monitor([
            "ADMIN_TOKEN": "0123456789abcdef", "KAFKA_TOPIC_ONLINE": "fleet.online", "KAFKA_TOPIC_OFFLINE": "fleet_offline-v2",
        ])
        #expect(custom.kafkaTopics == ["device.online": "fleet.online", "device.offline": "fleet_offline-v2"])
        for bad in ["has space", "..", String(repeating: "t", count: 250), "ü"] {
            #expect(throws: ConfigurationError.self, "\(bad)") { try Self.monitor(["ADMIN_TOKEN": "0123456789abcdef", "KAFKA_TOPIC_OFFLINE": bad]) }
        }
    }

    @Test func logFormatIsJSONOrText() throws {
        #expect(try Self.reader(["LOG_FORMAT": "json"]).logFormat() == .json)
        #expect(try Self.reader(["LOG_FORMAT": "TEXT"]).logFormat() == .text)
        #expect(throws: ConfigurationError.self) { try Self.reader(["LOG_FORMAT": "xml"]).logFormat() }
    }

    @Test func aJSONLogLineHasTheFieldsCollectorsExpect() throws {
        let line = JSONLogHandler.line(
            at: Date(timeIntervalSince1970: 1_770_028_200.123), level: .warning, logger: "heartbeat-monitor",
            message: "lost the \"leader\" lock", source: "Monitor", metadata: ["error": "timeout", "epoch": "3"])
        let object = try #require(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String])
        #expect(
            object == [
                "timestamp": "2026-02-02T10:30:00.123Z", "level": "warning", "logger": "heartbeat-monitor",
                "message": #"lost the "leader" lock"#, "source": "Monitor", "error": "timeout", "epoch": "3",
            ])
        #expect(!line.contains("\n"))
    }
}
