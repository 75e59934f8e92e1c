import NIOCore

/// A heartbeat request read straight from a connection's bytes, for ``HeartbeatWireHandler``.
///
/// Only the plain form a player sends is taken: `POST /api/v1/devices/{id}/heartbeat` (a query
/// allowed and ignored, as the router ignores it) over `HTTP/1.1`, CRLF line ends, header names of
/// token characters and values of printable ASCII, at most one `Content-Length` (decimal, within
/// the body limit) and one `Authorization`, no `Transfer-Encoding`, no `Expect`, `Connection`
/// absent or `keep-alive`. Anything else is ``Scan/notHandled``: the connection goes to
/// Hummingbird's HTTP/1 pipeline, which answers every request as the route does (or rejects what
/// is not HTTP), so nothing is answered differently here, only sooner.
struct HeartbeatWireRequest {
    /// The `{id}` path segment, as the route's parameter (checked by the controller).
    let rawID: Substring
    let contentLength: String?
    let authorization: String?
    /// The body, a slice of the connection's buffer (`Content-Length` bytes; empty without one).
    let body: ByteBuffer

    /// What the start of a connection's buffer holds.
    enum Scan {
        /// A whole request, and how many bytes it took.
        case request(HeartbeatWireRequest, length: Int)
        /// The start of a request this could take: wait for more bytes.
        case incomplete
        /// Not a request this takes.
        case notHandled
    }

    /// A request head longer than this is left to the HTTP/1 pipeline (a player's is ~250 bytes).
    static let maxHeadBytes = 8 * 1024

    private static let requestLinePrefix = Array("POST /api/v1/devices/".utf8)
    private static let pathSuffix = Array("/heartbeat".utf8)
    private static let version = Array(" HTTP/1.1".utf8)

    /// Reads the request at the start of `buffer`'s readable bytes, if it is one to take here.
    static func scan(_ buffer: ByteBuffer, maxBodyBytes: Int) -> Scan {
        let head = buffer.withUnsafeReadableBytes { bytes in scanHead(bytes) }
        switch head {
        case .incomplete(let seen): return seen > maxHeadBytes ? .notHandled : .incomplete
        case .notHandled: return .notHandled
        case .complete(let fields):
            var bodyLength = 0
            if let text = fields.contentLength {
                guard let length = Int(text), length <= maxBodyBytes else { return .notHandled }
                bodyLength = length
            }
            guard buffer.readableBytes - fields.headLength >= bodyLength,
                let body = buffer.getSlice(at: buffer.readerIndex + fields.headLength, length: bodyLength)
            else { return .incomplete }
            let request = HeartbeatWireRequest(
                rawID: Substring(fields.rawID), contentLength: fields.contentLength, authorization: fields.authorization, body: body)
            return .request(request, length: fields.headLength + bodyLength)
        }
    }

    private enum Head {
        case complete(Fields)
        case incomplete(seen: Int)
        case notHandled
    }

    private struct Fields {
        var rawID = ""
        var contentLength: String?
        var authorization: String?
        var headLength = 0
    }

    /// The request line and header lines, checked in one pass over the complete lines present.
    private static func scanHead(_ bytes: UnsafeRawBufferPointer) -> Head {
        var fields = Fields()
        var lineStart = 0
        var isRequestLine = true
        while true {
            guard let lineEnd = lineEnd(in: bytes, from: lineStart) else {
                // a request line still arriving must already start as one this takes
                if isRequestLine {
                    let seen = bytes.count - lineStart
                    guard bytes[lineStart...].prefix(requestLinePrefix.count).elementsEqual(requestLinePrefix.prefix(seen)) else {
                        return .notHandled
                    }
                }
                return .incomplete(seen: bytes.count)
            }
            guard lineEnd >= 0 else { return .notHandled }  // a bare LF
            let line = UnsafeRawBufferPointer(rebasing: bytes[lineStart..<lineEnd])
            lineStart = lineEnd + 2
            if isRequestLine {
                guard let id = requestLineID(line) else { return .notHandled }
                fields.rawID = id
                isRequestLine = false
            } else if line.isEmpty {
                fields.headLength = lineStart
                return .complete(fields)
            } else if !readHeader(line, into: &fields) {
                return .notHandled
            }
        }
    }

    /// The index of the CR of the next CRLF from `start`; -1 for a LF without its CR first; `nil`
    /// when no line end has arrived yet.
    private static func lineEnd(in bytes: UnsafeRawBufferPointer, from start: Int) -> Int? {
        guard let lf = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) else { return nil }
        return lf > start && bytes[lf - 1] == UInt8(ascii: "\r") ? lf - 1 : -1
    }

    /// The device id of `POST /api/v1/devices/{id}/heartbeat[?query] HTTP/1.1`.
    private static func requestLineID(_ line: UnsafeRawBufferPointer) -> String? {
        guard line.count > requestLinePrefix.count + pathSuffix.count + version.count,
            line.starts(with: requestLinePrefix), line.reversed().starts(with: version.reversed())
        else { return nil }
        let target = line[requestLinePrefix.count..<(line.count - version.count)]
        // ASCII letters, digits and hyphens (a UUID or not, the controller answers it as the route
        // would); percent-encoding and anything else is left to the router
        guard let idEnd = target.firstIndex(where: { !isIDByte($0) }), idEnd > target.startIndex else { return nil }
        let rest = target[idEnd...]
        guard rest.starts(with: pathSuffix) else { return nil }
        let query = rest.dropFirst(pathSuffix.count)
        guard query.isEmpty || (query.first == UInt8(ascii: "?") && query.allSatisfy { $0 > 0x20 && $0 < 0x7F }) else { return nil }
        return String(decoding: UnsafeRawBufferPointer(rebasing: target[..<idEnd]), as: UTF8.self)
    }

    private static func isIDByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "-"):
            true
        default: false
        }
    }

    /// Checks one `name: value` line and keeps the fields the route reads; `false` when the request
    /// is not one to take here.
    private static func readHeader(_ line: UnsafeRawBufferPointer, into fields: inout Fields) -> Bool {
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon > 0,
            line[..<colon].allSatisfy(isTokenByte),
            line[(colon + 1)...].allSatisfy({ ($0 >= 0x20 && $0 < 0x7F) || $0 == UInt8(ascii: "\t") })
        else { return false }
        let name = UnsafeRawBufferPointer(rebasing: line[..<colon])
        var value = line[(colon + 1)...]
        while let first = value.first, first == 0x20 || first == 0x09 { value = value.dropFirst() }
        while let last = value.last, last == 0x20 || last == 0x09 { value = value.dropLast() }
        let text = { String(decoding: UnsafeRawBufferPointer(rebasing: value), as: UTF8.self) }
        if equalsIgnoringCase(name, "content-length") {
            guard fields.contentLength == nil, (1...9).contains(value.count), value.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
                return false
            }
            fields.contentLength = text()
        } else if equalsIgnoringCase(name, "authorization") {
            guard fields.authorization == nil else { return false }
            fields.authorization = text()
        } else if equalsIgnoringCase(name, "connection") {
            return equalsIgnoringCase(UnsafeRawBufferPointer(rebasing: value), "keep-alive")
        } else if equalsIgnoringCase(name, "transfer-encoding") || equalsIgnoringCase(name, "expect") {
            return false
        }
        return true
    }

    private static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"):
            true
        default: "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }

    /// Whether `bytes` equal the lowercase ASCII `text`, ignoring the case of `bytes`.
    private static func equalsIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ text: StaticString) -> Bool {
        guard bytes.count == text.utf8CodeUnitCount else { return false }
        let expected = UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount)
        return zip(bytes, expected).allSatisfy { $0 | 0x20 == $1 }
    }
}
