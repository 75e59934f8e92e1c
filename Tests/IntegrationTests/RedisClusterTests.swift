import Foundation
import HeartbeatDomain
import Logging
import NIOPosix
import RedisAdapter
import Testing

@testable import Ingest
@testable import Monitor

/// The client in cluster mode against a real three-primary Redis Cluster on loopback: routing by
/// slot, scripts on every primary, `MOVED` after a slot moved, `ASK` during a migration, a primary
/// down and back; then the monitor and the gateway's script on the cluster. Serialized: each test
/// starts three `redis-server`s.
@Suite(.serialized) struct RedisClusterTests {
    @Test func routesEveryBucketsKeysAndScriptsToTheNodeServingIt() async throws {
        let cluster = try await RedisClusterNodes.start()
        let client = cluster.client()
        let keys = KeySchema(buckets: 16)
        let script = RedisScript(name: "incr", source: "redis.call('INCR', KEYS[2]); return redis.call('INCR', KEYS[1])")
        try await client.load([script])
        var owners: Set<Int> = []
        for bucket in 0..<16 {
            try await client.execute(["SET", keys.registryMarker(bucket: bucket), "1"])
            let reply = try await client.run(script, keys: [keys.online(bucket: bucket) + ":n", keys.history(bucket: bucket) + ":n"], arguments: [])
            #expect(reply == .integer(1))
            // the key is on the node that serves its slot, and only there
            let owner = try await cluster.owner(of: RedisSlot.of(keys.registryMarker(bucket: bucket)))
            owners.insert(owner.port)
            for node in cluster.nodes {
                let exists = try await cluster.direct(node, ["EXISTS", keys.registryMarker(bucket: bucket)])
                if node.port == owner.port {
                    #expect(exists == .integer(1), "bucket \(bucket) on its node \(node.port)")
                } else {
                    #expect(exists == .error("MOVED \(RedisSlot.of(keys.registryMarker(bucket: bucket))) 127.0.0.1:\(owner.port)"))
                }
            }
        }
        #expect(owners.count == 3, "16 buckets spread over the three primaries")
        // commands without keys go to any primary; the run id names all three
        #expect(try await client.execute(["PING"]) == .string("PONG"))
        #expect(try await client.serverRunID()?.split(separator: ",").count == 3)
        await client.shutdown()
    }

    @Test func followsMovedAfterASlotMovesAndAskDuringTheMove() async throws {
        let cluster = try await RedisClusterNodes.start()
        let client = cluster.client()
        let key = "hb:{5}:moving"
        let slot = RedisSlot.of(key)
        try await client.execute(["SET", key, "before"])  // the client's map now says: slot → source
        let source = try await cluster.owner(of: slot)
        let target = try #require(cluster.nodes.first { $0.port != source.port })
        let (sourceID, targetID) = (try await cluster.id(of: source), try await cluster.id(of: target))

        // mid-migration: the existing key moved, the slot not yet handed over
        try await cluster.direct(target, ["CLUSTER", "SETSLOT", String(slot), "IMPORTING", sourceID])
        try await cluster.direct(source, ["CLUSTER", "SETSLOT", String(slot), "MIGRATING", targetID])
        try await cluster.direct(source, ["MIGRATE", "127.0.0.1", String(target.port), "", "0", "5000", "KEYS", key])
        // ASK: the source no longer has the key and sends this one command on
        #expect(try await client.execute(["GET", key]) == .string("before"))
        #expect(try await Self.viaCallback(client, ["GET", key]) == .string("before"))
        #expect(try await client.send(["GET", key], on: Self.loop) == .string("before"), "the event-loop path through ASK")
        try await client.execute(["SET", "hb:{5}:new", "created during the move"])
        #expect(try await cluster.direct(target, ["EXISTS", "hb:{5}:new"]) == .error("MOVED \(slot) 127.0.0.1:\(source.port)"), "importing")
        #expect(try await cluster.direct(source, ["EXISTS", "hb:{5}:new"]) == .error("ASK \(slot) 127.0.0.1:\(target.port)"))

        // the slot handed over: MOVED, and the client's map learns the new owner
        for node in cluster.nodes { try await cluster.direct(node, ["CLUSTER", "SETSLOT", String(slot), "NODE", targetID]) }
        try await client.execute(["SET", key, "after"])
        #expect(try await cluster.direct(target, ["GET", key]) == .string("after"))
        #expect(try await client.execute(["GET", "hb:{5}:new"]) == .string("created during the move"))
        // the callback path (the gateway's) follows MOVED too, with a map that still names the source
        let fresh = cluster.client()
        try await fresh.execute(["SET", "hb:{6}:other", "1"])  // loads the map
        let stale = cluster.client()
        try await stale.send(["SET", "hb:{6}:other", "1"], on: Self.loop)
        try await cluster.direct(target, ["MIGRATE", "127.0.0.1", String(source.port), "", "0", "5000", "KEYS", key, "hb:{5}:new"])
        for node in cluster.nodes { try await cluster.direct(node, ["CLUSTER", "SETSLOT", String(slot), "NODE", sourceID]) }
        #expect(try await Self.viaCallback(client, ["GET", key]) == .string("after"))
        #expect(try await Self.viaCallback(fresh, ["GET", key]) == .string("after"))
        #expect(try await stale.send(["GET", key], on: Self.loop) == .string("after"), "the event-loop path through MOVED")
        await stale.shutdown()
        await fresh.shutdown()
        await client.shutdown()
    }

    static let loop = MultiThreadedEventLoopGroup.singleton.next()

    /// ``RedisClient/send(_:completion:)``, awaited.
    static func viaCallback(_ client: RedisClient, _ arguments: [String]) async throws -> RedisValue {
        try await withCheckedThrowingContinuation { continuation in
            client.send(arguments) { continuation.resume(with: $0) }
        }
    }

    @Test func aStoppedPrimaryFailsOnlyItsSlotsUntilItIsBack() async throws {
        let cluster = try await RedisClusterNodes.start()
        let client = cluster.client(timeout: .milliseconds(300))
        let keys = KeySchema(buckets: 16)
        for bucket in 0..<16 { try await client.execute(["SET", keys.registryMarker(bucket: bucket), "1"]) }
        let stopped = try await cluster.owner(of: RedisSlot.of(keys.registryMarker(bucket: 0)))
        var onStopped: [Bool] = []
        for bucket in 0..<16 { onStopped.append(try await cluster.owner(of: RedisSlot.of(keys.registryMarker(bucket: bucket))).port == stopped.port) }
        await stopped.stop()
        var failed = 0
        for bucket in 0..<16 {
            do {
                try await client.execute(["GET", keys.registryMarker(bucket: bucket)])
                #expect(!onStopped[bucket], "bucket \(bucket) answered from a stopped node")
            } catch let error as RedisError {
                #expect(onStopped[bucket], "bucket \(bucket) failed: \(error)")
                failed += 1
            }
            // the event-loop path (the gateway's heartbeats) the same way
            do {
                try await client.send(["GET", keys.registryMarker(bucket: bucket)], on: Self.loop)
                #expect(!onStopped[bucket], "bucket \(bucket) answered from a stopped node on the loop path")
            } catch is RedisError {
                #expect(onStopped[bucket], "bucket \(bucket) failed on the loop path")
            }
        }
        #expect(failed > 0 && failed < 16)
        try await stopped.start()  // same port and directory: nodes.conf brings its slots back
        #expect(
            try await eventually(.seconds(10)) {
                (try? await client.execute(["GET", keys.registryMarker(bucket: 0)])) != nil
            })
        #expect(
            try await eventually(.seconds(5)) {
                (try? await client.send(["GET", keys.registryMarker(bucket: 0)], on: Self.loop)) != nil
            }, "the loop path did not come back with the node")
        await client.shutdown()
    }

    @Test func theMonitorDeclaresSilentDevicesOfflineOnEveryNode() async throws {
        let cluster = try await RedisClusterNodes.start()
        let h = try await MonitorHarness.start(cluster: cluster)
        let devices = try await h.register(12)
        try await h.withMonitor { _ in
            for (id, token) in devices {
                guard case .recorded = try await h.beat(id, token: token) else {
                    Issue.record("heartbeat of \(id) not recorded")
                    return
                }
            }
            #expect(
                try await h.eventually(.seconds(5)) {
                    for (id, _) in devices where try await h.status(id)?.status != "online" { return false }
                    return true
                })
            let beating = Array(devices.prefix(4))
            let silentUntil = ContinuousClock.now + .seconds(4)
            while ContinuousClock.now < silentUntil {
                for (id, token) in beating { try await h.beat(id, token: token) }
                try await Task.sleep(for: .milliseconds(300))
            }
            #expect(
                try await h.eventually(.seconds(3)) {
                    for (id, _) in devices.dropFirst(4) where try await h.status(id)?.status != "offline" { return false }
                    return true
                })
            for (id, _) in beating { #expect(try await h.status(id)?.status == "online") }
            // history from every bucket's stream reached PostgreSQL
            #expect(
                try await h.eventually(.seconds(5)) {
                    let rows = try await h.database.connection.query("SELECT count(DISTINCT device_id) FROM heartbeat_history").scalar
                    return rows == "12"
                })
        }
        let buckets = Set(devices.map { h.keys.bucket(of: $0.0) })
        let nodes = try await Set(buckets.asyncMap { try await cluster.owner(of: RedisSlot.of(h.keys.online(bucket: $0))).port })
        #expect(nodes.count >= 2, "the devices' buckets span several primaries")
        await h.shutdown()
    }

    @Test func aPrimaryDownLeavesTheOtherNodesBucketsScannedAndItsDevicesOnline() async throws {
        let cluster = try await RedisClusterNodes.start()
        let h = try await MonitorHarness.start(cluster: cluster)
        try await h.migrate()
        // in PostgreSQL too: the stopped node comes back empty and its buckets are re-seeded from there
        let devices = try await h.registerEverywhere(24)
        let stopped = try await cluster.owner(of: RedisSlot.of(h.keys.online(bucket: h.keys.bucket(of: devices[0].0))))
        var stoppedOnes: [(DeviceID, String)] = []
        var elsewhere: [(DeviceID, String)] = []
        for device in devices {
            let owner = try await cluster.owner(of: RedisSlot.of(h.keys.online(bucket: h.keys.bucket(of: device.0))))
            if owner.port == stopped.port { stoppedOnes.append(device) } else { elsewhere.append(device) }
        }
        let onStopped = stoppedOnes
        try #require(onStopped.count >= 1 && elsewhere.count >= 4, "devices on the stopped node and elsewhere")
        let (beating, silent) = (Array(elsewhere.prefix(elsewhere.count / 2)), Array(elsewhere.dropFirst(elsewhere.count / 2)))
        try await h.withMonitor { _ in
            for (id, token) in devices { try await h.beat(id, token: token) }
            #expect(
                try await h.eventually(.seconds(5)) {
                    for (id, _) in devices where try await h.status(id)?.status != "online" { return false }
                    return true
                })
            // a primary lost for longer than OFFLINE_AFTER (2 s), with no replica to take over: its
            // devices cannot beat; the other nodes' silent devices must still be found
            await stopped.stop()
            let stoppedAt = try await h.database.connection.query("SELECT now()::text").scalar ?? ""
            let downUntil = ContinuousClock.now + .seconds(5)
            while ContinuousClock.now < downUntil {
                for (id, token) in beating { try await h.beat(id, token: token) }
                try await Task.sleep(for: .milliseconds(300))
            }
            for (id, _) in silent { #expect(try await h.status(id)?.status == "offline", "silent on a live node: \(id)") }
            for (id, _) in beating { #expect(try await h.status(id)?.status == "online") }
            for (id, _) in onStopped { #expect(try await h.status(id)?.status == "online", "its Redis was down: \(id)") }
            // and the live nodes' history kept reaching PostgreSQL meanwhile
            let written = try await h.database.connection.query(
                "SELECT count(*) FROM heartbeat_history WHERE received_at > $1::timestamptz AND device_id IN (\(beating.map { "'\($0.0)'" }.joined(separator: ",")))",
                [stoppedAt]
            ).scalar
            #expect((Int(written ?? "") ?? 0) > beating.count, "history rows of the beating devices while a primary was down: \(written ?? "none")")
            // back: its devices beat again within their credit, and none of them was declared offline
            try await stopped.start()
            #expect(
                try await h.eventually(.seconds(10)) {
                    for (id, token) in onStopped {
                        guard case .recorded = try? await h.beat(id, token: token) else { return false }
                    }
                    return true
                })
            let keepUntil = ContinuousClock.now + .seconds(3)
            while ContinuousClock.now < keepUntil {
                for (id, token) in beating + onStopped { _ = try? await h.beat(id, token: token) }
                try await Task.sleep(for: .milliseconds(300))
            }
            for (id, _) in onStopped { #expect(try await h.status(id)?.status == "online", "declared offline after its Redis came back: \(id)") }
            let offline = try await h.database.connection.query(
                "SELECT count(*) FROM device_status_events WHERE to_status = 'offline' AND device_id IN (\(onStopped.map { "'\($0.0)'" }.joined(separator: ",")))"
            ).scalar
            #expect(offline == "0")
        }
        await h.shutdown()
    }
}

extension Sequence {
    fileprivate func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var result: [T] = []
        for element in self { result.append(try await transform(element)) }
        return result
    }
}
