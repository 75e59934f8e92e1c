import Foundation
import HeartbeatDomain
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
        let payload = try HeartbeatPayload.decode(
            json: Self.body([
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

    @Test func jsonIsCanonicalAndEscaped() throws {
        var payload = try HeartbeatPayload.decode(json: Self.body(Self.valid))
        #expect(
            payload.json
                == #"{"device_id":"\#(Self.id)","timestamp":"2026-02-02T10:30:00.000Z","current_playlist":"pl-1","storage_status":{"total_gb":64,"used_gb":32.5},"network_status":"connected","player_version":"1.2.3"}"#
        )
        payload.playerVersion = "1.2\"x\\"
        let reparsed = try JSONSerialization.jsonObject(with: Data(payload.json.utf8)) as? [String: Any]
        #expect(reparsed?["player_version"] as? String == "1.2\"x\\")
        let again = try HeartbeatPayload.decode(json: Data(payload.json.utf8))
        #expect(again == payload)
    }

    // MARK: - The hand-written JSON reader (strict RFC 8259)

    static func decode(_ text: String) throws(PayloadValidationError) -> HeartbeatPayload {
        try HeartbeatPayload.decode(json: Data(text.utf8))
    }

    static func member(_ extra: String) -> String {
        #"{"device_id":"\#(id)","timestamp":"2026-02-02T10:30:00Z",\#(extra)}"#
    }

    @Test func decodesEscapesAndSurrogatePairs() throws {
        let payload = try Self.decode(Self.member(#""player_version":"v\u00e9\ud83d\ude00 \"q\" \\ \/","current_playlist":"caf\u00E9""#))
        #expect(payload.playerVersion == "vé😀 \"q\" \\ /")
        #expect(payload.currentPlaylist == "café")
    }

    @Test(arguments: [
        #""player_version":"\ud83d""#,  // lone high surrogate
        #""player_version":"\ude00x""#,  // lone low surrogate
        #""player_version":"\x""#,  // unknown escape
        #""player_version":"\u12g4""#,  // bad hex
        "\"player_version\":\"tab\there\"",  // raw control character inside a string
        #""n":01"#, #""n":1."#, #""n":.5"#, #""n":-"#, #""n":1e"#, #""n":+1"#,  // numbers outside the grammar
        #""n":tru"#, #""n":nul"#, #""n":[1,]"#, #""n":{"a":1,}"#, #""n":{1:2}"#,  // literals and containers
        #""n":1 "extra":2"#,  // missing comma
    ])
    func rejectsMalformedMembers(extra: String) {
        #expect(throws: PayloadValidationError(field: nil, message: "malformed JSON body")) { try Self.decode(Self.member(extra)) }
    }

    @Test func acceptsTheWholeGrammarInUnknownMembers() throws {
        let extra = #""n":[-0, 1.5e+3, 2E-2, 0.25, true, false, null, {"a":[{}], "b":"\u0000"}, []] , "s" : "x""#
        let payload = try Self.decode(" \n\t" + Self.member(extra) + " \r\n")
        #expect(payload.deviceID.string == Self.id)
    }

    @Test func refusesNestingDeeperThanTheLimitButNotBelowIt() throws {
        let shallow = String(repeating: "[", count: 30) + String(repeating: "]", count: 30)
        #expect(throws: Never.self) { try Self.decode(Self.member(#""n":\#(shallow)"#)) }
        let deep = String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000)
        #expect(throws: PayloadValidationError.malformedBody) { try Self.decode(Self.member(#""n":\#(deep)"#)) }
    }

    @Test func rejectsInvalidUTF8AndTrailingBytes() {
        var bytes = Array(Self.member(#""player_version":"ok""#).utf8)
        let quote = bytes.lastIndex(of: UInt8(ascii: "k"))!
        bytes[quote] = 0xC3  // a lead byte without its continuation
        #expect(throws: PayloadValidationError.malformedBody) { try HeartbeatPayload.decode(json: Data(bytes)) }
        #expect(throws: PayloadValidationError.malformedBody) { try Self.decode(Self.member(#""a":1"#) + "{}") }
    }

    @Test func aTypeErrorInAMalformedBodyIsReportedAsMalformed() {
        #expect(throws: PayloadValidationError.malformedBody) { try Self.decode(#"{"device_id":7,"timestamp":"#) }
        #expect(throws: PayloadValidationError(field: "device_id", message: "must be a string")) {
            try Self.decode(#"{"device_id":7,"timestamp":"2026-02-02T10:30:00Z"}"#)
        }
    }

    @Test func numbersKeepTheirValue() throws {
        let payload = try Self.decode(Self.member(#""storage_status":{"total_gb":1.25e2,"used_gb":100000000000000000000e-12}"#))
        #expect(payload.storage == .init(totalGB: 125, usedGB: 100_000_000))
        let negativeZero = try Self.decode(Self.member(#""storage_status":{"total_gb":-0,"used_gb":0.0}"#))
        #expect(negativeZero.storage?.totalGB == 0)
    }

    @Test func theLastOfDuplicateMembersWins() throws {
        let payload = try Self.decode(Self.member(#""player_version":"1","player_version":"2""#))
        #expect(payload.playerVersion == "2")
    }

    @Test func nonASCIITextIsCountedInCharactersAndCheckedForControls() {
        #expect(throws: Never.self) { try Self.decode(Self.member(#""network_status":"\#(String(repeating: "é", count: 64))""#)) }
        #expect(throws: PayloadValidationError.self) { try Self.decode(Self.member(#""network_status":"\#(String(repeating: "é", count: 65))""#)) }
        #expect(throws: PayloadValidationError.self) { try Self.decode(Self.member(#""network_status":"é\u0085""#)) }
        #expect(throws: PayloadValidationError.self) { try Self.decode(Self.member(#""network_status":"a\u007f""#)) }
    }

    @Test func deviceIDsAreCanonicalLowerCase() {
        #expect(DeviceID(Self.id.uppercased())?.string == Self.id)
        #expect(DeviceID(Self.id)?.uuid == UUID(uuidString: Self.id))
        for bad in [
            String(Self.id.dropLast()), Self.id + "0", Self.id.replacingOccurrences(of: "-", with: "x"),
            "g" + Self.id.dropFirst(), "3f2c1a9e8-d4b-4f6a-9c7e-1b2d3e4f5a6b",
        ] {
            #expect(DeviceID(bad) == nil, "\(bad)")
        }
    }

    // MARK: - The form Redis stores

    @Test func storedFormRoundTripsEveryField() throws {
        let full = try HeartbeatPayload.decode(json: Self.body(Self.valid))
        #expect(full.storedForm == "1770028200000\tpl-1\t64\t32.5\tconnected\t1.2.3")
        #expect(HeartbeatPayload(storedForm: full.storedForm, deviceID: full.deviceID) == full)
        let bare = HeartbeatPayload(deviceID: full.deviceID, deviceTime: full.deviceTime)
        #expect(bare.storedForm == "1770028200000\t\t\t\t\t")
        #expect(HeartbeatPayload(storedForm: bare.storedForm, deviceID: bare.deviceID) == bare)
        var odd = full
        odd.storage = .init(totalGB: 0.000015, usedGB: 1e9)
        odd.playerVersion = "v \"é\" \\"
        #expect(HeartbeatPayload(storedForm: odd.storedForm, deviceID: odd.deviceID) == odd)
    }

    @Test func storedFormRefusesJSONAndGarbage() throws {
        let full = try HeartbeatPayload.decode(json: Self.body(Self.valid))
        #expect(HeartbeatPayload(storedForm: full.json, deviceID: full.deviceID) == nil)
        for garbage in ["", "x\t\t\t\t\t", "1\t\t\t\t", "1\t\tx\t1\t\t", "{\"device_id\":1}"] {
            #expect(HeartbeatPayload(storedForm: garbage, deviceID: full.deviceID) == nil, "\(garbage)")
        }
    }

    @Test func jsonWrittenFromTheStoredFormIsTheStoredJSON() throws {
        let full = try HeartbeatPayload.decode(json: Self.body(Self.valid))
        var odd = full
        odd.storage = .init(totalGB: 0.000015, usedGB: 1e9)
        odd.playerVersion = "v \"é\" \\ /"
        odd.networkStatus = nil
        for payload in [full, odd, HeartbeatPayload(deviceID: full.deviceID, deviceTime: full.deviceTime)] {
            var out: [UInt8] = []
            let ms = HeartbeatPayload.appendJSON(ofStoredForm: payload.storedForm, deviceID: payload.deviceID, to: &out, doublingBackslashes: false)
            #expect(ms == payload.deviceTime.millisecondsSinceEpoch)
            #expect(String(decoding: out, as: UTF8.self) == payload.json)
        }
        for garbage in ["", "x\t\t\t\t\t", "1\t\t\t\t", "1\t\tx\t1\t\t", "1\t\t1\t\t\t", "1\t\t01\t2\t\t", "{\"device_id\":1}"] {
            var out: [UInt8] = [7]
            #expect(
                HeartbeatPayload.appendJSON(ofStoredForm: garbage, deviceID: full.deviceID, to: &out, doublingBackslashes: false) == nil, "\(garbage)"
            )
            #expect(out == [7])
        }
    }
}
