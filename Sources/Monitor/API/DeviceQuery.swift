import Foundation
import HeartbeatDomain
import ServerSupport

/// Query parameters of the device reads, checked with errors that say what is accepted.
enum DeviceQuery {
    /// Rows read past a history page, so copies of rows written twice can be skipped.
    static let duplicateMargin = 64

    static func limit(_ raw: String?) throws -> Int {
        guard let raw else { return 100 }
        guard let value = Int(raw), (1...1000).contains(value) else { throw APIError.invalidQuery("limit must be from 1 to 1000") }
        return value
    }

    static func time(_ raw: String?, name: String) throws -> UTCTimestamp? {
        guard let raw else { return nil }
        guard let value = UTCTimestamp(iso8601: raw),
            value >= HeartbeatPayload.Limits.earliestDeviceTime, value <= HeartbeatPayload.Limits.latestDeviceTime
        else {
            throw APIError.invalidQuery("\(name) must be an ISO-8601 date-time from 1970 to 9999, e.g. 2026-02-02T10:30:00Z")
        }
        return value
    }

    /// The device id a `next_cursor` carries.
    static func cursor(_ raw: String) throws -> DeviceID {
        guard let decoded = Data(base64Encoded: raw).flatMap({ String(data: $0, encoding: .utf8) }), let id = DeviceID(decoded) else {
            throw APIError.invalidQuery("cursor is not one this API returned")
        }
        return id
    }
}
