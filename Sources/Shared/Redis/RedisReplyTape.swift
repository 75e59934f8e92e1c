import CHiredis

/// Where a hiredis reader puts the replies it parses, instead of hiredis's own reply objects: the
/// reply's parts in reading order (an array, then its elements), and their strings in one byte
/// buffer, both reused from reply to reply.
///
/// hiredis allocates a `redisReply` for every part of a reply, and a buffer for every string, and
/// frees them one by one: ~18 allocations for each entry of a history batch (nine parts, eight of
/// them strings). `malloc`, `free` and glibc's chunk merging were ~30% of the monitor's samples
/// under load, and hiredis's parsing with its allocations 16%. Through a tape, only the ``RedisValue`` a
/// caller gets is allocated.
///
/// The tape keeps the capacity of the largest reply it held (a full history batch of 5,000 entries:
/// ~3 MB), once per connection.
///
/// Not `Sendable`: used by the one thread (or event loop) that owns the reader.
final class RedisReplyTape {
    private enum Kind {
        case string, status, error, integer, array, null
    }

    private struct Part {
        var kind: Kind
        /// An integer's value, or an array's element count.
        var number: Int64 = 0
        /// A string's bytes in ``bytes``.
        var start = 0
        var count = 0
    }

    private var parts: [Part] = []
    private var bytes: [UInt8] = []

    /// Makes `reader` record its replies here. The tape must outlive the reader.
    func attach(to reader: UnsafeMutablePointer<redisReader>) {
        reader.pointee.fn = Self.functions
        reader.pointee.privdata = Unmanaged.passUnretained(self).toOpaque()
    }

    /// The reply whose root the reader returned (`redisReaderGetReply`, `redisGetReply`), as a
    /// ``RedisValue``. Clears the tape for the next reply.
    func take(_ root: UnsafeMutableRawPointer) -> RedisValue {
        var index = Int(bitPattern: root) - 1
        let value = value(at: &index)
        parts.removeAll(keepingCapacity: true)
        bytes.removeAll(keepingCapacity: true)
        return value
    }

    private func value(at index: inout Int) -> RedisValue {
        let part = parts[index]
        index += 1
        switch part.kind {
        case .string, .status: return .string(string(part))
        case .error: return .error(string(part))
        case .integer: return .integer(part.number)
        case .null: return .null
        case .array:
            var elements: [RedisValue] = []
            elements.reserveCapacity(Int(part.number))
            for _ in 0..<part.number { elements.append(value(at: &index)) }
            return .array(elements)
        }
    }

    private func string(_ part: Part) -> String {
        bytes.withUnsafeBufferPointer { String(decoding: $0[part.start..<part.start + part.count], as: UTF8.self) }
    }

    /// Records a part; what hiredis keeps as the part's object is its position + 1 (never null,
    /// which hiredis would take for an allocation failure).
    private func record(_ part: Part) -> UnsafeMutableRawPointer? {
        parts.append(part)
        return UnsafeMutableRawPointer(bitPattern: parts.count)
    }

    private func recordString(_ kind: Kind, _ text: UnsafeMutablePointer<CChar>?, _ count: Int) -> UnsafeMutableRawPointer? {
        let start = bytes.count
        if let text, count > 0 {
            text.withMemoryRebound(to: UInt8.self, capacity: count) { bytes.append(contentsOf: UnsafeBufferPointer(start: $0, count: count)) }
        }
        return record(Part(kind: kind, start: start, count: count))
    }

    private static func tape(_ task: UnsafePointer<redisReadTask>?) -> RedisReplyTape {
        Unmanaged<RedisReplyTape>.fromOpaque(task!.pointee.privdata).takeUnretainedValue()
    }

    /// The reader's callbacks; the parts come in reading order, so an array's elements are the
    /// parts after it and need no link to it.
    nonisolated(unsafe) private static let functions: UnsafeMutablePointer<redisReplyObjectFunctions> = {
        let table = UnsafeMutablePointer<redisReplyObjectFunctions>.allocate(capacity: 1)
        table.initialize(
            to: redisReplyObjectFunctions(
                createString: { task, text, count in
                    let kind: Kind =
                        switch task!.pointee.type {
                        case REDIS_REPLY_ERROR: .error
                        case REDIS_REPLY_STATUS: .status
                        default: .string
                        }
                    return tape(task).recordString(kind, text, count)
                },
                createArray: { task, count in tape(task).record(Part(kind: .array, number: Int64(count))) },
                createInteger: { task, value in tape(task).record(Part(kind: .integer, number: Int64(value))) },
                createNil: { task in tape(task).record(Part(kind: .null)) },
                freeObject: { _ in }))
        return table
    }()
}
