import Configuration
import Testing

@testable import Monitor
import HeartbeatDomain
import PostgresAdapter
import RedisAdapter
import ServerSupport

@Suite struct TransitionBatchTests {
    let id = DeviceID.random()

    func entry(_ streamID: String, _ fields: [String: String]) -> StreamEntry { StreamEntry(id: streamID, fields: fields) }

    @Test func buildsTheApplyParametersInStreamOrder() {
        let batch = TransitionBatch(entries: [
            entry("1700000000000-0", ["device": id.string, "type": "online", "at": "1700000000000", "last_heartbeat": "1700000000000"]),
            entry("1700000002500-3", ["device": id.string, "type": "offline", "at": "1700000002500", "last_heartbeat": "1700000000000"]),
        ])
        #expect(batch.malformed.isEmpty)
        #expect(batch.ids == ["1700000000000-0", "1700000002500-3"])
        #expect(batch.kinds == ["online", "offline"])
        #expect(batch.atMs == ["1700000000000", "1700000002500"])
        #expect(batch.reasons == ["heartbeat_received", "heartbeat_timeout"])
        let query: PostgresQuery = "SELECT apply_transitions(\(batch.ids)::text[], \(Duration.milliseconds(2500).seconds)::float8)"
        #expect(query.sql == "SELECT apply_transitions($1::text[], $2::float8)")
        #expect(query.binds == [#"{"1700000000000-0","1700000002500-3"}"#, "2.5"])
    }

    @Test func setsAsideMalformedEntries() {
        let batch = TransitionBatch(entries: [
            entry("1-0", ["device": "not-a-uuid", "type": "online", "at": "1", "last_heartbeat": "1"]),
            entry("2-0", ["device": id.string, "type": "sideways", "at": "1", "last_heartbeat": "1"]),
            entry("3-0", ["device": id.string, "type": "online"]),
            entry("4-0", ["device": id.string, "type": "online", "at": "1", "last_heartbeat": "1"]),
        ])
        #expect(batch.malformed == ["1-0", "2-0", "3-0"])
        #expect(batch.ids == ["4-0"])
    }
}

@Suite struct StreamEntryTests {
    @Test func parsesEntryLists() {
        let entries: RedisValue = .array([.array([.string("5-1"), .array([.string("a"), .string("1"), .string("b"), .string("2")])])])
        #expect(StreamEntry.list(entries) == [StreamEntry(id: "5-1", fields: ["a": "1", "b": "2"])])
        #expect(StreamEntry.list(.null).isEmpty)
    }
}

@Suite struct MonitorConfigurationTests {
    func configuration(_ environment: [String: String]) throws(ConfigurationError) -> MonitorConfiguration {
        try MonitorConfiguration(reader: ConfigReader(provider: EnvironmentVariablesProvider(environmentVariables: environment)))
    }

    @Test func refusesToStartWithoutAnAdminToken() {
        #expect(throws: ConfigurationError(variable: "ADMIN_TOKEN", value: nil, reason: "is required: the ops API refuses to run without a bearer token")) {
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

@Suite struct HistoryBatchTests {
    @Test func rowsAreCOPYTextWithBackslashesDoubledAndBadEntriesCounted() throws {
        let id = DeviceID("3f2c1a9e-8d4b-4f6a-9c7e-1b2d3e4f5a6b")!
        let payload = HeartbeatPayload(deviceID: id, deviceTime: UTCTimestamp(millisecondsSinceEpoch: 1_770_028_200_000), playerVersion: "a\\b\"c")
        let entries = [
            StreamEntry(id: "1-0", fields: ["d": id.string, "t": "1770028201234", "p": payload.storedForm]),
            StreamEntry(id: "2-0", fields: ["d": "not-a-uuid", "t": "1", "p": payload.storedForm]),
            StreamEntry(id: "3-0", fields: ["d": id.string, "t": "1770028201234", "p": "garbage"]),
        ]
        let batch = HistoryBatch(entries: entries, bucket: 7)
        #expect(batch.unreadable == 2)
        #expect(batch.receivedAt == [1_770_028_201_234])
        let text = String(decoding: batch.data, as: UTF8.self)
        #expect(text == "\(id.string)\t2026-02-02T10:30:01.234Z\t"
            + #"{"device_id":"3f2c1a9e-8d4b-4f6a-9c7e-1b2d3e4f5a6b","timestamp":"2026-02-02T10:30:00.000Z","player_version":"a\\\\b\\"c"}"#
            + "\t2026-02-02T10:30:00.000Z\t7:1-0\n")
        #expect(batch.newestPerDevice == [id: 1_770_028_201_234])
        // JSON is not a stored form
        let json = HistoryBatch(entries: [StreamEntry(id: "1-0", fields: ["d": id.string, "t": "1770028201234", "p": payload.json])], bucket: 7)
        #expect(json.unreadable == 1 && json.isEmpty)
    }
}
