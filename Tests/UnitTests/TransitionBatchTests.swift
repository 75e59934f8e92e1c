import Configuration
import HeartbeatDomain
import PostgresAdapter
import RedisAdapter
import ServerSupport
import Testing

@testable import Monitor

@Suite struct TransitionBatchTests {
    let id = DeviceID.random()

    func entry(_ streamID: String, _ fields: StreamFields) -> StreamEntry { StreamEntry(id: streamID, fields: fields) }

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
        #expect(query.binds == ["{1700000000000-0,1700000002500-3}", "2.5"])
        // elements that need it are quoted and escaped; NULL and empty strings too
        #expect(["a b", "NULL", "", #"q"\"#, "x,y", "plain"].postgresText == #"{"a b","NULL","","q\"\\","x,y",plain}"#)
        #expect(["null", "Null", "nullx", "nul"].postgresText == #"{"null","Null",nullx,nul}"#)
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
