import Foundation

/// A device's identity: a UUID, always written in its canonical lower-case form.
///
/// The canonical string is what goes into Redis keys, PostgreSQL rows and Kafka keys, so two
/// spellings of the same UUID (upper/lower case) can never name two devices.
public struct DeviceID: Sendable, Hashable, Codable, CustomStringConvertible {
    /// The canonical lower-case form, e.g. `3f2c…`.
    public let string: String

    public init(_ uuid: UUID) {
        self.string = uuid.uuidString.lowercased()
    }

    /// Parses a UUID in its 36-character hyphenated form (any case); `nil` otherwise.
    ///
    /// Hand-written (every heartbeat parses two): hex digits with hyphens at 8, 13, 18 and 23,
    /// lower-cased in one pass.
    public init?(_ text: some StringProtocol) {
        var canonical = [UInt8](repeating: 0, count: 36)
        var count = 0
        for byte in text.utf8 {
            guard count < 36 else { return nil }
            switch (count, byte) {
            case (8, UInt8(ascii: "-")), (13, UInt8(ascii: "-")), (18, UInt8(ascii: "-")), (23, UInt8(ascii: "-")):
                canonical[count] = byte
            case (8, _), (13, _), (18, _), (23, _):
                return nil
            case (_, UInt8(ascii: "0")...UInt8(ascii: "9")), (_, UInt8(ascii: "a")...UInt8(ascii: "f")):
                canonical[count] = byte
            case (_, UInt8(ascii: "A")...UInt8(ascii: "F")):
                canonical[count] = byte | 0x20
            default:
                return nil
            }
            count += 1
        }
        guard count == 36 else { return nil }
        self.string = String(decoding: canonical, as: UTF8.self)
    }

    /// The id as a Foundation `UUID`.
    public var uuid: UUID { UUID(uuidString: string)! }

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
