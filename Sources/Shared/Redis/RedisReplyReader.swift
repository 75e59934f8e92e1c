import CHiredis

/// hiredis's RESP reader on its own, without a connection: for replies that arrive through
/// SwiftNIO (``RedisLoopConnection``). Parses into a ``RedisReplyTape``.
///
/// Not `Sendable`: used by the one event loop that owns its channel.
final class RedisReplyReader {
    private let reader: UnsafeMutablePointer<redisReader>
    private let tape = RedisReplyTape()

    init() {
        reader = redisReaderCreate()
        tape.attach(to: reader)
    }

    deinit {
        redisReaderFree(reader)
    }

    /// Adds received bytes. False when the reader is broken (after a protocol error).
    func feed(_ bytes: UnsafeRawBufferPointer) -> Bool {
        redisReaderFeed(reader, bytes.baseAddress?.assumingMemoryBound(to: CChar.self), bytes.count) == REDIS_OK
    }

    /// The next whole reply, or `nil` until more bytes come.
    /// - Throws: ``RedisError/unexpectedReply(_:)`` when the bytes are not RESP; the reader is then broken.
    func next() throws(RedisError) -> RedisValue? {
        var reply: UnsafeMutableRawPointer?
        guard redisReaderGetReply(reader, &reply) == REDIS_OK else {
            let message = withUnsafeBytes(of: reader.pointee.errstr) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            throw .unexpectedReply(message)
        }
        return reply.map(tape.take)
    }
}
