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
        let utf8 = text.utf8
        guard utf8.count == 36 else { return nil }
        var valid = true
        let canonical = String(unsafeUninitializedCapacity: 36) { out in
            for (index, byte) in utf8.enumerated() {
                switch (index, byte) {
                case (8, UInt8(ascii: "-")), (13, UInt8(ascii: "-")), (18, UInt8(ascii: "-")), (23, UInt8(ascii: "-")):
                    out[index] = byte
                case (8, _), (13, _), (18, _), (23, _):
                    valid = false
                    return 0
                case (_, UInt8(ascii: "0")...UInt8(ascii: "9")), (_, UInt8(ascii: "a")...UInt8(ascii: "f")):
                    out[index] = byte
                case (_, UInt8(ascii: "A")...UInt8(ascii: "F")):
                    out[index] = byte | 0x20
                default:
                    valid = false
                    return 0
                }
            }
            return 36
        }
        guard valid else { return nil }
        self.string = canonical
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
