import Foundation
import HeartbeatDomain
import PostgresAdapter
import Testing

@testable import Monitor

/// `apply_transitions` in PostgreSQL: the set-based path (distinct devices) and the in-order path
/// (a device twice in one batch) give the same statuses, versions, events and outbox rows, and a
/// replayed batch changes nothing.
@Suite struct ApplyTransitionsTests {
    private func apply(_ db: TestDatabase, bucket: Int = 0, ids: [String], devices: [DeviceID], kinds: [String], atMs: Int64 = 1_770_028_200_000)
        async throws -> Int
    {
        let n = ids.count
        let sql = """
            SELECT apply_transitions(\(bucket), $1::text[], $2::uuid[], $3::text[], $4::bigint[], $5::bigint[], $6::text[], 600)
            """
        let list = { (values: [String]) in "{" + values.joined(separator: ",") + "}" }
        return Int(
            try await db.connection.query(
                sql,
                [
                    list(ids), list(devices.map(\.string)), list(kinds),
                    list((0..<n).map { String(atMs + Int64($0)) }), list((0..<n).map { String(atMs - 1000 + Int64($0)) }),
                    list(kinds.map { $0 == "offline" ? "heartbeat_timeout" : "heartbeat" }),
                ]
            ).scalar ?? "") ?? -1
    }

    private func state(_ db: TestDatabase, _ id: DeviceID) async throws -> (status: String, version: Int, events: [String], outbox: [String]) {
        let row = try await db.connection.query("SELECT status, status_version FROM devices WHERE id = $1", [id.string]).rows.first
        let events = try await db.connection.query(
            "SELECT to_status FROM device_status_events WHERE device_id = $1 ORDER BY status_version", [id.string])
        let outbox = try await db.connection.query(
            "SELECT payload::json->>'previous_status' || '>' || (payload::json->>'status') || ':' || (payload::json->>'status_version') FROM outbox WHERE key = $1 ORDER BY id",
            [id.string])
        return (row?[0] ?? "", Int(row?[1] ?? "") ?? -1, events.rows.map { $0[0] ?? "" }, outbox.rows.map { $0[0] ?? "" })
    }

    @Test func distinctDevicesAreAppliedTogetherAndAReplayChangesNothing() async throws {
        let db = try await TestDatabase.create()
        try await Migrations.run(on: db.connection)
        let devices = (0..<50).map { _ in DeviceID.random() }
        let ids = (0..<50).map { "1-\($0)" }
        #expect(try await apply(db, ids: ids, devices: devices, kinds: Array(repeating: "online", count: 50)) == 50)
        #expect(try await apply(db, ids: ids, devices: devices, kinds: Array(repeating: "online", count: 50)) == 0, "replay")
        // half go offline; the other half report online again (no change, no event)
        let kinds = (0..<50).map { $0 % 2 == 0 ? "offline" : "online" }
        #expect(try await apply(db, ids: (0..<50).map { "2-\($0)" }, devices: devices, kinds: kinds) == 25)
        for (index, id) in devices.enumerated() {
            let s = try await state(db, id)
            if index % 2 == 0 {
                #expect(s.status == "offline" && s.version == 2 && s.events == ["online", "offline"])
                #expect(s.outbox == ["unknown>online:1", "online>offline:2"])
            } else {
                #expect(s.status == "online" && s.version == 1 && s.events == ["online"])
            }
        }
        await db.drop()
    }

    @Test func theFunctionIsPlannedForEachBatchWithoutJIT() async throws {
        // a generic plan (PostgreSQL's choice after five calls in a session) scanned whole tables:
        // 2.4 s per 5,000 transitions instead of 0.3 s (docs/scaling.md); JIT compiling the
        // once-run plans took 20–30 ms of each call (migration 8)
        let db = try await TestDatabase.create()
        try await Migrations.run(on: db.connection)
        func settings(of function: String) async throws -> String? {
            try await db.connection.query("SELECT array_to_string(proconfig, ',') FROM pg_proc WHERE proname = $1", [function]).scalar
        }
        #expect(try await settings(of: "apply_transitions") == "plan_cache_mode=force_custom_plan,jit=off")
        #expect(try await settings(of: "apply_transitions_in_order") == "jit=off")
        await db.drop()
    }

    @Test func deviceRowsLeaveRoomForInPlaceHeartbeatUpdates() async throws {
        let db = try await TestDatabase.create()
        try await Migrations.run(on: db.connection)
        let options = try await db.connection.query("SELECT array_to_string(reloptions, ',') FROM pg_class WHERE relname = 'devices'").scalar
        #expect(options == "fillfactor=70")
        // the write-behind of last_heartbeat is then a HOT update (no index touched)
        try await db.connection.query(
            "INSERT INTO devices (id, name, token_hash) SELECT md5(i::text)::uuid, 'd', 'h' FROM generate_series(1, 1000) i")
        for _ in 0..<3 { try await db.connection.query("UPDATE devices SET last_heartbeat = now()") }
        try await db.connection.query("SELECT pg_stat_force_next_flush()")
        let hot = try await db.connection.query("SELECT n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'devices'").scalar
        #expect((Int(hot ?? "") ?? 0) > 1000, "HOT updates of 3,000: \(hot ?? "none")")
        await db.drop()
    }

    @Test func aDeviceTwiceInOneBatchIsAppliedInOrder() async throws {
        let db = try await TestDatabase.create()
        try await Migrations.run(on: db.connection)
        let (a, b) = (DeviceID.random(), DeviceID.random())
        let applied = try await apply(
            db, ids: ["1-0", "1-1", "1-2", "1-3"], devices: [a, b, a, a], kinds: ["online", "online", "offline", "online"])
        #expect(applied == 4)
        let s = try await state(db, a)
        #expect(s.status == "online" && s.version == 3)
        #expect(s.events == ["online", "offline", "online"])
        #expect(s.outbox == ["unknown>online:1", "online>offline:2", "offline>online:3"])
        #expect(try await state(db, b).version == 1)
        await db.drop()
    }
}
