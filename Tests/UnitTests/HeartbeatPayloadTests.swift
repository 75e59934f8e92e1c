import Foundation
import Shared
import Testing

@Suite struct HeartbeatPayloadTests {
    static let id = "3f2c1a9e-8d4b-4f6a-9c7e-1b2d3e4f5a6b"

    static func body(_ fields: [String: Any]) -> Data {
        try! JSONSerialization.data(withJSONObject: fields)
    }

    static var valid: [String: Any] {
        [
            "device_id": id, "timestamp": "2026-02-02T10:30:00Z", "current_playlist": "pl-1",
            "storage_status": ["total_gb": 64, "used_gb": 32.5], "network_status": "connected", "player_version": "1.2.3",
        ]
    }

    @Test func decodesTheStoryBody() throws {
        let payload = try HeartbeatPayload.decode(json: Self.body(Self.valid))
        #expect(payload.deviceID == DeviceID(Self.id))
        #expect(payload.deviceTime.iso8601 == "2026-02-02T10:30:00.000Z")
        #expect(payload.currentPlaylist == "pl-1")
        #expect(payload.storage == .init(totalGB: 64, usedGB: 32.5))
        #expect(payload.networkStatus == "connected")
        #expect(payload.playerVersion == "1.2.3")
    }

    @Test func onlyIdAndTimestampAreRequiredAndUnknownFieldsAreIgnored() throws {
        let payload = try HeartbeatPayload.decode(json: Self.body([
            "device_id": Self.id.uppercased(), "timestamp": "2026-02-02T10:30:00Z", "firmware": ["x": 1],
        ]))
        #expect(payload.deviceID.string == Self.id)
        #expect(payload.storage == nil && payload.currentPlaylist == nil)
    }

    nonisolated(unsafe) static let invalidCases: [(String, [String: Any?], String?)] = [
        ("missing id", ["device_id": nil], "device_id"),
        ("id not uuid", ["device_id": "abc"], "device_id"),
        ("id number", ["device_id": 42], "device_id"),
        ("missing timestamp", ["timestamp": nil], "timestamp"),
        ("timestamp not iso", ["timestamp": "02/02/2026"], "timestamp"),
        ("timestamp number", ["timestamp": 1_770_028_200], "timestamp"),
        ("timestamp before 1970", ["timestamp": "0000-01-01T00:00:00+01:00"], "timestamp"),
        ("timestamp past 9999", ["timestamp": "9999-12-31T23:30:00-01:00"], "timestamp"),
        ("negative total", ["storage_status": ["total_gb": -1, "used_gb": 0]], "storage_status.total_gb"),
        ("negative used", ["storage_status": ["total_gb": 1, "used_gb": -0.5]], "storage_status.used_gb"),
        ("string number", ["storage_status": ["total_gb": "64", "used_gb": 1]], "storage_status.total_gb"),
        ("missing used", ["storage_status": ["total_gb": 64]], "storage_status.used_gb"),
        ("huge number", ["storage_status": ["total_gb": 1e300, "used_gb": 1]], "storage_status.total_gb"),
        ("storage not object", ["storage_status": "full"], "storage_status"),
        ("empty playlist", ["current_playlist": ""], "current_playlist"),
        ("long playlist", ["current_playlist": String(repeating: "p", count: 129)], "current_playlist"),
        ("playlist number", ["current_playlist": 7], "current_playlist"),
        ("long version", ["player_version": String(repeating: "1", count: 65)], "player_version"),
        ("control chars", ["network_status": "ok\u{0}"], "network_status"),
        ("null network", ["network_status": NSNull()], nil),
    ]

    @Test(arguments: 0..<invalidCases.count)
    func rejectsInvalidFields(index: Int) {
        let (name, changes, field) = Self.invalidCases[index]
        var fields = Self.valid
        for (key, value) in changes {
            if let value { fields[key] = value } else { fields.removeValue(forKey: key) }
        }
        if field == nil {
            // null for an optional field means absent: accepted.
            #expect(throws: Never.self, "\(name)") { try HeartbeatPayload.decode(json: Self.body(fields)) }
            return
        }
        #expect(throws: PayloadValidationError.self, "\(name)") { try HeartbeatPayload.decode(json: Self.body(fields)) }
        do {
            _ = try HeartbeatPayload.decode(json: Self.body(fields))
        } catch {
            #expect(error.field == field, "\(name): \(error)")
            #expect(!error.message.isEmpty)
        }
    }

    @Test(arguments: ["", "{", "[]", "\"text\"", "null", "{\"device_id\":}", "\u{FF}\u{FE}"])
    func rejectsMalformedJSON(text: String) {
        #expect(throws: PayloadValidationError.self) { try HeartbeatPayload.decode(json: Data(text.utf8)) }
    }

    @Test func storedJSONIsCanonicalAndEscaped() throws {
        var payload = try HeartbeatPayload.decode(json: Self.body(Self.valid))
        #expect(payload.storedJSON == #"{"device_id":"\#(Self.id)","timestamp":"2026-02-02T10:30:00.000Z","current_playlist":"pl-1","storage_status":{"total_gb":64,"used_gb":32.5},"network_status":"connected","player_version":"1.2.3"}"#)
        payload.playerVersion = "1.2\"x\\"
        let reparsed = try JSONSerialization.jsonObject(with: Data(payload.storedJSON.utf8)) as? [String: Any]
        #expect(reparsed?["player_version"] as? String == "1.2\"x\\")
        let again = try HeartbeatPayload.decode(json: Data(payload.storedJSON.utf8))
        #expect(again == payload)
    }
}
