import Testing

@testable import RedisAdapter

@Suite struct RedisReplyReaderTests {
    private func feed(_ reader: RedisReplyReader, _ text: String) {
        let bytes = Array(text.utf8)
        #expect(bytes.withUnsafeBytes { reader.feed($0) })
    }

    private func replies(_ reader: RedisReplyReader) throws -> [RedisValue] {
        var all: [RedisValue] = []
        while let reply = try reader.next() { all.append(reply) }
        return all
    }

    @Test func everyKindOfReplyComesOutAsItsValue() throws {
        let reader = RedisReplyReader()
        feed(reader, "+OK\r\n-NOSCRIPT no script\r\n:-42\r\n$4\r\nhé!\r\n$0\r\n\r\n$-1\r\n*-1\r\n*0\r\n")
        #expect(
            try replies(reader) == [
                .string("OK"), .error("NOSCRIPT no script"), .integer(-42), .string("hé!"), .string(""), .null, .null, .array([]),
            ])
    }

    /// An XREADGROUP reply: arrays in arrays, an element after a nested array, a null element.
    @Test func nestedArraysKeepTheirElementsInOrder() throws {
        let reader = RedisReplyReader()
        feed(
            reader,
            "*2\r\n*2\r\n$6\r\nstream\r\n*2\r\n*2\r\n$3\r\n1-0\r\n*4\r\n$1\r\nd\r\n$2\r\nid\r\n$1\r\np\r\n$2\r\n{}\r\n"
                + "*2\r\n$3\r\n2-0\r\n*0\r\n$-1\r\n:7\r\n")
        let entries: RedisValue = .array([
            .array([.string("1-0"), .array([.string("d"), .string("id"), .string("p"), .string("{}")])]),
            .array([.string("2-0"), .array([])]),
        ])
        #expect(try replies(reader) == [.array([.array([.string("stream"), entries]), .null]), .integer(7)])
    }

    /// Replies split anywhere across reads, two replies in one read: each comes whole, once.
    @Test func repliesSplitAcrossReadsComeWhole() throws {
        let text = "*3\r\n:1\r\n$11\r\nhello world\r\n*1\r\n+nested\r\n$3\r\nend\r\n"
        let expected: [RedisValue] = [.array([.integer(1), .string("hello world"), .array([.string("nested")])]), .string("end")]
        for cut in 1..<text.utf8.count {
            let reader = RedisReplyReader()
            let bytes = Array(text.utf8)
            var got: [RedisValue] = []
            for part in [bytes[..<cut], bytes[cut...]] {
                #expect(Array(part).withUnsafeBytes { reader.feed($0) })
                got += try replies(reader)
            }
            #expect(got == expected, "cut at \(cut)")
        }
    }

    @Test func bytesThatAreNotRESPBreakTheReader() {
        let reader = RedisReplyReader()
        feed(reader, "?what\r\n")
        #expect(throws: RedisError.self) { try reader.next() }
    }
}
