import HeartbeatDomain
import Testing

@Suite struct UTCTimestampTests {
    @Test(arguments: [
        ("1970-01-01T00:00:00Z", Int64(0)),
        ("2026-02-02T10:30:00Z", Int64(1_770_028_200_000)),
        ("2026-02-02T10:30:00.5Z", Int64(1_770_028_200_500)),
        ("2026-02-02T10:30:00.123456Z", Int64(1_770_028_200_123)),
        ("2026-02-02T11:30:00+01:00", Int64(1_770_028_200_000)),
        ("2026-02-02T05:00:00-05:30", Int64(1_770_028_200_000)),
        ("2026-02-02t10:30:00z", Int64(1_770_028_200_000)),
        ("2024-02-29T00:00:00Z", Int64(1_709_164_800_000)),
        ("1969-12-31T23:59:59Z", Int64(-1000)),
    ])
    func parsesRFC3339(text: String, expected: Int64) {
        #expect(UTCTimestamp(iso8601: text)?.millisecondsSinceEpoch == expected)
    }

    @Test(arguments: [
        "", "2026-02-02", "2026-02-02T10:30:00", "2026-02-02T10:30Z", "2026-13-01T00:00:00Z",
        "2026-02-30T00:00:00Z", "2025-02-29T00:00:00Z", "2026-02-02T24:00:00Z", "2026-02-02T10:60:00Z",
        "2026-02-02T10:30:00.Z", "2026-02-02T10:30:00Zjunk", "2026-02-02T10:30:00+1:00", "20260202T103000Z",
        "2026-02-02T10:30:00+25:00", "tomorrow", "2026-０2-02T10:30:00Z",
    ])
    func rejectsMalformed(text: String) {
        #expect(UTCTimestamp(iso8601: text) == nil)
    }

    @Test func formatsUTCWithMilliseconds() {
        #expect(UTCTimestamp(millisecondsSinceEpoch: 0).iso8601 == "1970-01-01T00:00:00.000Z")
        #expect(UTCTimestamp(millisecondsSinceEpoch: 1_770_028_200_123).iso8601 == "2026-02-02T10:30:00.123Z")
        #expect(UTCTimestamp(millisecondsSinceEpoch: -1).iso8601 == "1969-12-31T23:59:59.999Z")
        #expect(UTCTimestamp(seconds: 1_709_164_800, microseconds: 999_999).iso8601 == "2024-02-29T00:00:00.999Z")
    }

    @Test func roundTripsOverFourCenturies() {
        var ms: Int64 = -2_000_000_000_000
        while ms < 12_000_000_000_000 {
            let stamp = UTCTimestamp(millisecondsSinceEpoch: ms)
            #expect(UTCTimestamp(iso8601: stamp.iso8601) == stamp)
            ms += 86_400_000 * 37 + 3_723_456
        }
    }
}
