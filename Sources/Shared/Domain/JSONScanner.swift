/// A strict (RFC 8259) single-pass JSON reader over UTF-8 bytes, for the heartbeat hot path.
///
/// It reads the values a caller asks for and validates and skips everything else, with no
/// intermediate tree: Foundation's `JSONDecoder` cost ~80 µs of the gateway's CPU per heartbeat,
/// this ~1 µs. Strings are checked for valid UTF-8 and escapes; numbers follow the JSON grammar;
/// nesting deeper than ``maximumDepth`` is refused so hostile bodies cannot exhaust the stack.
struct JSONScanner {
    /// The bytes are not JSON (or nest deeper than ``maximumDepth``).
    struct Malformed: Error {}

    /// The kind of a value, known from its first byte.
    enum Kind {
        case string, number, object, array, bool, null
    }

    static let maximumDepth = 64

    private let bytes: UnsafeRawBufferPointer
    private(set) var index = 0

    init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
    }

    /// Skips whitespace and tells the kind of the next value, without consuming it.
    mutating func peekKind() throws(Malformed) -> Kind {
        skipWhitespace()
        guard index < bytes.count else { throw Malformed() }
        switch bytes[index] {
        case UInt8(ascii: "\""): return .string
        case UInt8(ascii: "{"): return .object
        case UInt8(ascii: "["): return .array
        case UInt8(ascii: "t"), UInt8(ascii: "f"): return .bool
        case UInt8(ascii: "n"): return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number
        default: throw Malformed()
        }
    }

    /// Reads the members of an object, calling `member` with each key; `member` must consume the value.
    mutating func readObject(
        depth: Int = 0, _ member: (String, inout JSONScanner) throws(Malformed) -> Void
    ) throws(Malformed) {
        guard depth < Self.maximumDepth else { throw Malformed() }
        try expect(UInt8(ascii: "{"))
        if try consume(UInt8(ascii: "}")) { return }
        repeat {
            guard try peekKind() == .string else { throw Malformed() }
            let key = try readString()
            try expect(UInt8(ascii: ":"))
            try member(key, &self)
        } while try consume(UInt8(ascii: ","))
        try expect(UInt8(ascii: "}"))
    }

    /// Reads a string value (escapes decoded, UTF-8 validated).
    mutating func readString() throws(Malformed) -> String {
        try expect(UInt8(ascii: "\""))
        let start = index
        var highBits: UInt8 = 0
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                let raw = UnsafeRawBufferPointer(rebasing: bytes[start..<index])
                // ASCII is valid UTF-8 as it is; `String(validating:as:)` is generic and not
                // specialized here (~1.5% of the gateway's samples went to its metadata lookups)
                let text = highBits < 0x80 ? String(decoding: raw, as: UTF8.self) : String(validating: raw, as: UTF8.self)
                index += 1
                guard let text else { throw Malformed() }
                return text
            }
            highBits |= byte
            if byte == UInt8(ascii: "\\") { return try readEscapedString(from: start) }
            guard byte >= 0x20 else { throw Malformed() }
            index += 1
        }
        throw Malformed()
    }

    /// Reads a number value.
    mutating func readNumber() throws(Malformed) -> Double {
        skipWhitespace()
        let start = index
        var integer: Int64 = 0
        var integerDigits = 0
        let negative = index < bytes.count && bytes[index] == UInt8(ascii: "-")
        if negative { index += 1 }
        guard index < bytes.count, isDigit(bytes[index]) else { throw Malformed() }
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
            integerDigits = 1
        } else {
            while index < bytes.count, isDigit(bytes[index]) {
                if integerDigits < 18 { integer = integer * 10 + Int64(bytes[index] - UInt8(ascii: "0")) }
                integerDigits += 1
                index += 1
            }
        }
        var plainInteger = integerDigits <= 15
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            try digits()
            plainInteger = false
        }
        if index < bytes.count, bytes[index] | 0x20 == UInt8(ascii: "e") {
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
            try digits()
            plainInteger = false
        }
        if plainInteger { return Double(negative ? -integer : integer) }
        // The grammar is checked above, so the standard library parses exactly this text.
        guard let value = Double(String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)) else {
            throw Malformed()
        }
        return value
    }

    /// Reads `null`, returning whether it was there (nothing is consumed otherwise).
    mutating func readNull() throws(Malformed) -> Bool {
        guard try peekKind() == .null else { return false }
        try literal("null")
        return true
    }

    /// Validates and skips one value of any kind.
    mutating func skipValue(depth: Int = 0) throws(Malformed) {
        switch try peekKind() {
        case .string: _ = try readString()
        case .number: _ = try readNumber()
        case .null: try literal("null")
        case .bool: try literal(bytes[index] == UInt8(ascii: "t") ? "true" : "false")
        case .object: try readObject(depth: depth) { (_, scanner) throws(Malformed) in try scanner.skipValue(depth: depth + 1) }
        case .array: try readArray(depth: depth) { (scanner) throws(Malformed) in try scanner.skipValue(depth: depth + 1) }
        }
    }

    /// Reads the elements of an array, calling `element` for each; `element` must consume the value.
    mutating func readArray(depth: Int = 0, _ element: (inout JSONScanner) throws(Malformed) -> Void) throws(Malformed) {
        guard depth < Self.maximumDepth else { throw Malformed() }
        try expect(UInt8(ascii: "["))
        if try consume(UInt8(ascii: "]")) { return }
        repeat { try element(&self) } while try consume(UInt8(ascii: ","))
        try expect(UInt8(ascii: "]"))
    }

    /// Requires that only whitespace is left.
    mutating func expectEnd() throws(Malformed) {
        skipWhitespace()
        guard index == bytes.count else { throw Malformed() }
    }

    // MARK: - Pieces

    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    private mutating func consume(_ byte: UInt8) throws(Malformed) -> Bool {
        skipWhitespace()
        guard index < bytes.count else { throw Malformed() }
        guard bytes[index] == byte else { return false }
        index += 1
        return true
    }

    private mutating func expect(_ byte: UInt8) throws(Malformed) {
        guard try consume(byte) else { throw Malformed() }
    }

    private mutating func literal(_ word: StaticString) throws(Malformed) {
        let count = word.utf8CodeUnitCount
        guard index + count <= bytes.count else { throw Malformed() }
        for offset in 0..<count where bytes[index + offset] != word.utf8Start[offset] { throw Malformed() }
        index += count
    }

    private func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

    private mutating func digits() throws(Malformed) {
        guard index < bytes.count, isDigit(bytes[index]) else { throw Malformed() }
        while index < bytes.count, isDigit(bytes[index]) { index += 1 }
    }

    /// The slow path of ``readString()``: the string has escapes. `start` is just after the opening quote.
    private mutating func readEscapedString(from start: Int) throws(Malformed) -> String {
        var decoded = [UInt8](UnsafeRawBufferPointer(rebasing: bytes[start..<index]))
        while index < bytes.count {
            let byte = bytes[index]
            index += 1
            switch byte {
            case UInt8(ascii: "\""):
                guard let text = String(validating: decoded, as: UTF8.self) else { throw Malformed() }
                return text
            case UInt8(ascii: "\\"):
                guard index < bytes.count else { throw Malformed() }
                let escape = bytes[index]
                index += 1
                switch escape {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): decoded.append(escape)
                case UInt8(ascii: "b"): decoded.append(0x08)
                case UInt8(ascii: "f"): decoded.append(0x0C)
                case UInt8(ascii: "n"): decoded.append(0x0A)
                case UInt8(ascii: "r"): decoded.append(0x0D)
                case UInt8(ascii: "t"): decoded.append(0x09)
                case UInt8(ascii: "u"): decoded.append(contentsOf: try unicodeEscape().utf8)
                default: throw Malformed()
                }
            case 0..<0x20:
                throw Malformed()
            default:
                decoded.append(byte)
            }
        }
        throw Malformed()
    }

    /// The scalar of a `\uXXXX` escape (index just after the `u`), joining a surrogate pair.
    private mutating func unicodeEscape() throws(Malformed) -> String {
        let first = try hexQuad()
        var scalar: Unicode.Scalar?
        switch first {
        case 0xD800...0xDBFF:
            guard index + 2 <= bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
                throw Malformed()
            }
            index += 2
            let second = try hexQuad()
            guard (0xDC00...0xDFFF).contains(second) else { throw Malformed() }
            scalar = Unicode.Scalar(0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00))
        case 0xDC00...0xDFFF:
            throw Malformed()
        default:
            scalar = Unicode.Scalar(first)
        }
        guard let scalar else { throw Malformed() }
        return String(Character(scalar))
    }

    private mutating func hexQuad() throws(Malformed) -> UInt32 {
        guard index + 4 <= bytes.count else { throw Malformed() }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw Malformed()
            }
            value = value << 4 | UInt32(digit)
            index += 1
        }
        return value
    }
}
