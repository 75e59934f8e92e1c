/// A point in time as milliseconds since the Unix epoch, UTC.
///
/// Parsing and formatting are hand-written (RFC 3339 / ISO-8601 profile) because they sit on the
/// heartbeat hot path: a device timestamp is parsed and a server time formatted for every request.
public struct UTCTimestamp: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Milliseconds since 1970-01-01T00:00:00Z.
    public var millisecondsSinceEpoch: Int64

    public init(millisecondsSinceEpoch: Int64) {
        self.millisecondsSinceEpoch = millisecondsSinceEpoch
    }

    /// Builds a timestamp from Redis `TIME` (seconds and microseconds).
    public init(seconds: Int64, microseconds: Int64) {
        self.millisecondsSinceEpoch = seconds * 1000 + microseconds / 1000
    }

    public static func < (lhs: Self, rhs: Self) -> Bool {
        lhs.millisecondsSinceEpoch < rhs.millisecondsSinceEpoch
    }

    /// ISO-8601 in UTC with millisecond precision and a `Z` suffix, e.g. `2026-02-02T10:30:00.000Z`.
    public var iso8601: String {
        let ms = millisecondsSinceEpoch
        var days = ms >= 0 ? ms / 86_400_000 : (ms - 86_399_999) / 86_400_000
        let msOfDay = ms - days * 86_400_000
        days += 719_468  // shift the epoch to 0000-03-01 (civil-from-days, H. Hinnant)
        let era = (days >= 0 ? days : days - 146_096) / 146_097
        let dayOfEra = days - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)

        var out = [UInt8]()
        out.reserveCapacity(24)
        func digits(_ value: Int64, _ width: Int) {
            var divisor: Int64 = 1
            for _ in 1..<width { divisor *= 10 }
            var v = value
            while divisor > 0 {
                out.append(UInt8(48 + (v / divisor) % 10))
                v %= divisor
                divisor /= 10
            }
        }
        digits(year, 4)
        out.append(45)
        digits(month, 2)
        out.append(45)
        digits(day, 2)
        out.append(84)
        digits(msOfDay / 3_600_000, 2)
        out.append(58)
        digits(msOfDay / 60_000 % 60, 2)
        out.append(58)
        digits(msOfDay / 1000 % 60, 2)
        out.append(46)
        digits(msOfDay % 1000, 3)
        out.append(90)
        return String(decoding: out, as: UTF8.self)
    }

    public var description: String { iso8601 }

    /// Parses an RFC 3339 date-time: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`.
    ///
    /// `t`/`z` in lower case and a space instead of `T` are accepted (RFC 3339 allows them);
    /// fractions beyond milliseconds are truncated. Returns `nil` for anything else, including
    /// out-of-range fields such as month 13 or February 30.
    public init?(iso8601 text: String) {
        var text = text
        let parsed: Int64? = text.withUTF8 { Self.parse($0) }
        guard let parsed else { return nil }
        self.millisecondsSinceEpoch = parsed
    }

    private static func parse(_ s: UnsafeBufferPointer<UInt8>) -> Int64? {
        var i = 0
        func number(_ width: Int) -> Int64? {
            guard i + width <= s.count else { return nil }
            var v: Int64 = 0
            for _ in 0..<width {
                let c = s[i]
                guard c >= 48, c <= 57 else { return nil }
                v = v * 10 + Int64(c - 48)
                i += 1
            }
            return v
        }
        func expect(_ options: UInt8...) -> Bool {
            guard i < s.count, options.contains(s[i]) else { return false }
            i += 1
            return true
        }
        guard let year = number(4), expect(45), let month = number(2), expect(45), let day = number(2),
            expect(84, 116, 32), let hour = number(2), expect(58), let minute = number(2), expect(58),
            let second = number(2)
        else { return nil }
        var millis: Int64 = 0
        if i < s.count, s[i] == 46 {
            i += 1
            var digits = 0
            while i < s.count, s[i] >= 48, s[i] <= 57 {
                if digits < 3 { millis = millis * 10 + Int64(s[i] - 48) }
                digits += 1
                i += 1
            }
            guard digits > 0 else { return nil }
            for _ in digits..<max(digits, 3) { millis *= 10 }
        }
        var offsetMinutes: Int64 = 0
        if expect(90, 122) {
        } else if i < s.count, s[i] == 43 || s[i] == 45 {
            let sign: Int64 = s[i] == 45 ? -1 : 1
            i += 1
            guard let oh = number(2), expect(58), let om = number(2), oh <= 23, om <= 59 else { return nil }
            offsetMinutes = sign * (oh * 60 + om)
        } else {
            return nil
        }
        guard i == s.count else { return nil }
        guard (1...12).contains(month), hour <= 23, minute <= 59, second <= 60 else { return nil }
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
        let monthDays: [Int64] = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        guard day >= 1, day <= monthDays[Int(month - 1)] else { return nil }
        // days-from-civil (H. Hinnant)
        let y = month <= 2 ? year - 1 : year
        let era = y / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        let days = era * 146_097 + doe - 719_468
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + min(second, 59) - offsetMinutes * 60
        return seconds * 1000 + millis
    }
}
