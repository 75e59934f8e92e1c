/// The Redis Cluster hash slot of a key: CRC16 (XMODEM) of the key, or of its hash tag (the text
/// between the first `{` and the next `}`, when not empty), modulo 16384.
public enum RedisSlot {
    /// Slots in a Redis Cluster.
    public static let count = 16384

    /// The slot `key` belongs to.
    public static func of(_ key: String) -> Int {
        var key = key
        return key.withUTF8 { of(utf8: $0) }
    }

    /// The slot of a key given as UTF-8 bytes.
    public static func of(utf8 key: UnsafeBufferPointer<UInt8>) -> Int {
        var hashed = key[...]
        if let open = key.firstIndex(of: UInt8(ascii: "{")),
            let close = key[(open + 1)...].firstIndex(of: UInt8(ascii: "}")), close > open + 1
        {
            hashed = key[(open + 1)..<close]
        }
        var crc: UInt16 = 0
        for byte in hashed {
            crc = (crc << 8) ^ table[Int(UInt8(truncatingIfNeeded: crc >> 8) ^ byte)]
        }
        return Int(crc) & (count - 1)
    }

    /// CRC16-CCITT (XMODEM: polynomial 0x1021, initial value 0), a byte at a time.
    private static let table: [UInt16] = (0..<256).map { index in
        var crc = UInt16(index) << 8
        for _ in 0..<8 { crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1 }
        return crc
    }
}
