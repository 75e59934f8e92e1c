import RedisAdapter
import Testing

@testable import RedisAdapter

/// Slot computation, `CLUSTER SLOTS` parsing, redirections and routing keys, without a server.
@Suite struct RedisClusterMapTests {
    @Test(arguments: [
        // values from Redis's CLUSTER KEYSLOT
        ("123456789", 12739), ("foo", 12182), ("bar", 5061), ("hello", 866),
        ("{user1000}.following", 3443), ("{user1000}.followers", 3443),
        ("foo{}{bar}", 8363), ("foo{{bar}}zap", 4015), ("foo{bar}{zap}", 5061), ("", 0),
        ("hb:{3}:online", 1584), ("hb:{3}:dev:6f7e2c1a-0000-4000-8000-000000000001", 1584),
    ])
    func slotsMatchRedis(key: String, slot: Int) {
        #expect(RedisSlot.of(key) == slot)
    }

    @Test func readsClusterSlots() throws {
        let node = { (host: String, port: Int64, id: String) in RedisValue.array([.string(host), .integer(port), .string(id)]) }
        let reply = RedisValue.array([
            .array([.integer(0), .integer(5460), node("10.0.0.1", 7001, "a"), node("10.0.0.4", 7004, "d")]),
            .array([.integer(5461), .integer(10922), node("", 7002, "b")]),
            .array([.integer(10923), .integer(16383), node("10.0.0.3", 7003, "c")]),
        ])
        let map = try RedisClusterMap(clusterSlots: reply, answeredBy: .init(host: "10.0.0.9", port: 7009))
        #expect(map.primaries.map(\.description) == ["10.0.0.1:7001", "10.0.0.9:7002", "10.0.0.3:7003"])
        #expect(map.coveredSlots == RedisSlot.count)
        #expect(map.primary(of: 0)?.port == 7001)
        #expect(map.primary(of: 5461)?.port == 7002)
        #expect(map.primary(of: 16383)?.port == 7003)
        #expect(map.slots(of: .init(host: "10.0.0.1", port: 7001)) == [0...5460])
    }

    @Test func aPartialMapLeavesSlotsUnservedAndMovedReassigns() throws {
        let reply = RedisValue.array([.array([.integer(100), .integer(199), .array([.string("h"), .integer(1)])])])
        var map = try RedisClusterMap(clusterSlots: reply, answeredBy: .init(host: "h", port: 1))
        #expect(map.coveredSlots == 100)
        #expect(map.primary(of: 99) == nil)
        map.assign(150, to: .init(host: "h", port: 2))
        #expect(map.primary(of: 150)?.port == 2)
        #expect(map.slots(of: .init(host: "h", port: 1)) == [100...149, 151...199])
    }

    @Test(arguments: [RedisValue.string("x"), .array([.array([.integer(5), .integer(1), .array([.string("h"), .integer(1)])])])])
    func refusesMalformedSlotReplies(reply: RedisValue) {
        #expect(throws: RedisError.self) { try RedisClusterMap(clusterSlots: reply, answeredBy: .init(host: "h", port: 1)) }
    }

    @Test func parsesRedirections() {
        let here = RedisClusterMap.Node(host: "10.0.0.1", port: 7001)
        let moved = RedisRedirect("MOVED 3999 127.0.0.1:6381", from: here)
        #expect(moved?.kind == .moved && moved?.slot == 3999 && moved?.node == .init(host: "127.0.0.1", port: 6381))
        let ask = RedisRedirect("ASK 1 :7002", from: here)
        #expect(ask?.kind == .ask && ask?.slot == 1 && ask?.node == .init(host: "10.0.0.1", port: 7002))
        #expect(RedisRedirect("ERR unknown command", from: here) == nil)
        #expect(RedisRedirect("MOVED 99999 h:1", from: here) == nil)
        #expect(RedisRedirect("MOVED 1 h:0", from: here) == nil)
    }

    @Test(
        arguments: [
            (["EVALSHA", "abc", "2", "hb:{1}:online", "hb:{1}:transitions", "arg"], "hb:{1}:online"),
            (["EVALSHA", "abc", "0"], nil),
            (["XREADGROUP", "GROUP", "g", "c", "COUNT", "10", "STREAMS", "hb:{2}:history", ">"], "hb:{2}:history"),
            (["XGROUP", "CREATE", "s", "g", "0"], "s"),
            (["XINFO", "GROUPS", "s"], "s"),
            (["HSET", "k", "f", "v"], "k"),
            (["PING"], nil), (["INFO", "server"], nil), (["SCRIPT", "LOAD", "return 1"], nil), (["TIME"], nil),
        ] as [([String], String?)])
    func routesByTheCommandsKey(arguments: [String], key: String?) {
        #expect(RedisCommandKey.of(arguments) == key)
    }
}
