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
        var string = String(text)
        guard let canonical = string.withUTF8({ Self.canonical($0) }) else { return nil }
        self.string = canonical
    }

    /// The lower-case form of a hyphenated UUID's bytes, or `nil`. Non-generic on purpose: generic
    /// byte iteration across modules is not specialized and cost the history writer a fifth of its CPU.
    private static func canonical(_ bytes: UnsafeBufferPointer<UInt8>) -> String? {
        guard bytes.count == 36 else { return nil }
        for index in 0..<36 {
            let byte = bytes[index]
            switch index {
            case 8, 13, 18, 23:
                guard byte == UInt8(ascii: "-") else { return nil }
            default:
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "f"), UInt8(ascii: "A")...UInt8(ascii: "F"): break
                default: return nil
                }
            }
        }
        return String(unsafeUninitializedCapacity: 36) { out in
            for index in 0..<36 {
                let byte = bytes[index]
                out[index] = byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "F") ? byte | 0x20 : byte
            }
            return 36
        }
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
