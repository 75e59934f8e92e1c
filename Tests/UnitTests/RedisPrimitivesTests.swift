import HeartbeatDomain
import RedisAdapter
import Testing

@Suite struct RedisPrimitivesTests {
    @Test func encodesRESP() {
        let bytes = RedisCommandEncoder.encode(["SET", "key", "välue", ""])
        #expect(String(decoding: bytes, as: UTF8.self) == "*4\r\n$3\r\nSET\r\n$3\r\nkey\r\n$6\r\nvälue\r\n$0\r\n\r\n")
    }

    @Test(arguments: [
        ("redis://127.0.0.1:6379", RedisEndpoint(host: "127.0.0.1", port: 6379)),
        ("redis://localhost", RedisEndpoint(host: "localhost", port: 6379)),
        ("redis://:secret@h:7000/2", RedisEndpoint(host: "h", port: 7000, password: "secret", database: 2)),
        ("redis://user:pw@h:7000", RedisEndpoint(host: "h", port: 7000, username: "user", password: "pw")),
    ])
    func parsesURLs(url: String, expected: RedisEndpoint) {
        #expect(RedisEndpoint(url: url) == expected)
    }

    @Test(arguments: ["http://h:1", "redis://", "redis://h:0", "redis://h:99999", "redis://h:x", "redis://h/db", "127.0.0.1:6379"])
    func rejectsBadURLs(url: String) {
        #expect(RedisEndpoint(url: url) == nil)
    }

    @Test func aScriptCallIsTheEVALSHAAndTheEVALOfItsKeysAndArguments() {
        let script = RedisScript(name: "t", source: "return KEYS[1]")
        var call = RedisScriptCall(script, keys: 2, arguments: 1, capacity: 8)
        #expect(!call.isComplete)
        call.appendKey("hb:{3}:a")
        call.appendKey("hb:{3}:", "b")  // written from two parts, as one argument
        call.append("välue")
        #expect(call.isComplete)
        #expect(call.routingKey == "hb:{3}:a")
        #expect(call.evalsha == RedisCommandEncoder.encode(["EVALSHA", script.sha1, "2", "hb:{3}:a", "hb:{3}:b", "välue"]))
        #expect(call.eval == RedisCommandEncoder.encode(["EVAL", script.source, "2", "hb:{3}:a", "hb:{3}:b", "välue"]))
        let arrays = RedisScriptCall(script, keys: ["hb:{3}:a", "hb:{3}:b"], arguments: ["välue"])
        #expect(arrays.evalsha == call.evalsha)
        #expect(RedisScriptCall(script, keys: [], arguments: ["x"]).routingKey == nil)
    }

    @Test func scriptSHA1MatchesRedis() {
        // SHA-1 of "return 1", as Redis's SCRIPT LOAD reports it.
        #expect(RedisScript(name: "t", source: "return 1").sha1 == "e0e1f9fabfc9d4800c877a703b823ac0578ff8db")
    }

    @Test func tokensAreRandomAndHashedWithSHA256() {
        #expect(DeviceToken.hash("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        let a = DeviceToken.generate()
        let b = DeviceToken.generate()
        #expect(a != b)
        #expect(a.count == 43)
        #expect(a.allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" })
    }

    @Test func transientErrorsAreTheRetryableOnes() {
        #expect(RedisError.timeout.isTransient)
        #expect(RedisError.unavailable("x").isTransient)
        #expect(RedisError.server("LOADING Redis is loading").isTransient)
        #expect(!RedisError.server("ERR wrong number of arguments").isTransient)
    }
}
