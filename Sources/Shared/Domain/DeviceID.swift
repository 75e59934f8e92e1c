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
    /// Hand-written (every heartbeat parses two, the history writer one per row): hex digits with
    /// hyphens at 8, 13, 18 and 23. A lower-case id keeps the string it came in (no copy); only an
    /// id with upper-case digits is rewritten.
    public init?(_ text: some StringProtocol) {
        var string = String(text)
        switch string.withUTF8({ Self.form(of: $0) }) {
        case .invalid: return nil
        case .canonical: self.string = string
        case .upperCase: self.string = string.withUTF8 { Self.lowerCased($0) }
        }
    }

    private enum Form { case invalid, canonical, upperCase }

    /// Whether the bytes are a hyphenated UUID, and in which case. Non-generic on purpose: generic
    /// byte iteration across modules is not specialized and cost the history writer a fifth of its CPU.
    private static func form(of bytes: UnsafeBufferPointer<UInt8>) -> Form {
        guard bytes.count == 36 else { return .invalid }
        var upper = false
        for index in 0..<36 {
            let byte = bytes[index]
            switch index {
            case 8, 13, 18, 23:
                guard byte == UInt8(ascii: "-") else { return .invalid }
            default:
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "f"): break
                case UInt8(ascii: "A")...UInt8(ascii: "F"): upper = true
                default: return .invalid
                }
            }
        }
        return upper ? .upperCase : .canonical
    }

    private static func lowerCased(_ bytes: UnsafeBufferPointer<UInt8>) -> String {
        String(unsafeUninitializedCapacity: 36) { out in
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
