import HeartbeatDomain
import PostgresAdapter

// The domain's values as PostgreSQL parameters and columns.

extension DeviceID: PostgresEncodable, PostgresDecodable, PostgresTextDecodable {
    public var postgresText: String { string }
    public init?(postgresText: String) { self.init(postgresText) }
}

extension DeviceStatus: PostgresEncodable, PostgresDecodable, PostgresTextDecodable {
    public var postgresText: String { rawValue }
    public init?(postgresText: String) { self.init(rawValue: postgresText) }
}

/// Timestamps travel as milliseconds since the epoch (`to_timestamp($n / 1000.0)` in, `ms(column)` out).
extension UTCTimestamp: PostgresEncodable, PostgresDecodable, PostgresTextDecodable {
    public var postgresText: String { String(millisecondsSinceEpoch) }
    public init?(postgresText: String) {
        guard let ms = Int64(postgresText) else { return nil }
        self.init(millisecondsSinceEpoch: ms)
    }
}
