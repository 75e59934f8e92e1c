import HeartbeatDomain
import Testing

@Suite struct KeySchemaTests {
    let id = DeviceID("3f2c1a9e-8d4b-4f6a-9c7e-1b2d3e4f5a6b")!

    @Test func bucketIsStableAndInRange() {
        let keys = KeySchema(buckets: 16)
        // FNV-1a 32 of the canonical id: pinned so that a change of hash (which would move every
        // device of a running deployment) cannot slip in unnoticed.
        #expect(keys.bucket(of: id) == 7)
        #expect(KeySchema(buckets: 1).bucket(of: id) == 0)
        for _ in 0..<1000 {
            #expect(keys.allBuckets.contains(keys.bucket(of: .random())))
        }
    }

    @Test func spreadsDevicesEvenly() {
        let keys = KeySchema(buckets: 16)
        var counts = [Int](repeating: 0, count: 16)
        for _ in 0..<16_000 { counts[keys.bucket(of: .random())] += 1 }
        #expect(counts.min()! > 800 && counts.max()! < 1200, "\(counts)")
    }

    @Test func caseOfTheUUIDDoesNotChangeTheKeys() {
        let upper = DeviceID(id.string.uppercased())!
        let keys = KeySchema(buckets: 16)
        #expect(keys.device(upper) == keys.device(id))
    }

    @Test func keysCarryTheBucketHashTag() {
        let keys = KeySchema(buckets: 16)
        let b = keys.bucket(of: id)
        #expect(keys.online(bucket: b) == "hb:{\(b)}:online")
        #expect(keys.transitions(bucket: b) == "hb:{\(b)}:transitions")
        #expect(keys.history(bucket: b) == "hb:{\(b)}:history")
        #expect(keys.device(id) == "hb:{\(b)}:dev:\(id.string)")
        #expect(keys.commands(id) == "hb:{\(b)}:cmds:\(id.string)")
        #expect(keys.commandLog(id) == "hb:{\(b)}:cmdlog:\(id.string)")
        // the gateway writes a device's keys as its bucket's prefix followed by the id
        #expect(keys.devicePrefix(bucket: b) + id.string == keys.device(id))
        #expect(keys.commandsPrefix(bucket: b) + id.string == keys.commands(id))
        #expect(keys.commandLogPrefix(bucket: b) + id.string == keys.commandLog(id))
    }
}
