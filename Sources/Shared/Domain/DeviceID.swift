import Foundation

/// A device's identity: a UUID, always written in its canonical lower-case form.
///
/// The canonical string is what goes into Redis keys, PostgreSQL rows and Kafka keys, so two
/// spellings of the same UUID (upper/lower case) can never name two devices.
public struct DeviceID: Sendable, Hashable, Codable, CustomStringConvertible {
    public let uuid: UUID
    /// The canonical lower-case form, e.g. `3f2c…`.
    public let string: String

    public init(_ uuid: UUID) {
        self.uuid = uuid
        self.string = uuid.uuidString.lowercased()
    }

    /// Parses a UUID in its 36-character hyphenated form (any case); `nil` otherwise.
    public init?(_ text: some StringProtocol) {
        guard text.utf8.count == 36, let uuid = UUID(uuidString: String(text)) else { return nil }
        self.init(uuid)
    }

    /// A new random device id.
    public static func random() -> DeviceID { DeviceID(UUID()) }

    public var description: String { string }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let id = DeviceID(text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not a UUID"))
        }
        self = id
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(string)
    }
}
