import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// One kept-alive TCP connection speaking HTTP/1.1 by hand: for what a client library hides
/// (pipelined requests, a half-closed socket, which connection a reply came on).
final class RawHTTPConnection {
    private let fd: Int32
    private var received: [UInt8] = []

    init?(port: Int) {
        guard let fd = RawSocket.open(port: port) else { return nil }
        self.fd = fd
    }

    deinit { close(fd) }

    func send(_ text: String) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// Closes the sending side (the server sees the end of its input).
    func shutdownWrite() {
        shutdown(fd, Int32(SHUT_WR))
    }

    /// The next `count` complete responses (head and `Content-Length` body each), or fewer if the
    /// connection closes or `timeout` passes first.
    func responses(_ count: Int, timeout: Duration = .seconds(5)) -> [String] {
        var responses: [String] = []
        let deadline = ContinuousClock.now + timeout
        while responses.count < count {
            if let response = takeResponse() {
                responses.append(response)
                continue
            }
            guard ContinuousClock.now < deadline, read(until: deadline) else { break }
        }
        return responses
    }

    /// Whether the server closes the connection before `timeout` (reads and drops anything sent first).
    func isClosedByPeer(within timeout: Duration) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            var buffer = [UInt8](repeating: 0, count: 4096)
            var tv = timeval(tv_sec: 0, tv_usec: 100_000)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { return true }
            if n < 0 && errno != EAGAIN && errno != EWOULDBLOCK { return true }
        }
        return false
    }

    /// Reads what arrives within 100 ms; false when the peer closed.
    private func read(until deadline: ContinuousClock.Instant) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 16384)
        var tv = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n > 0 {
            received += buffer[0..<n]
            return true
        }
        return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)
    }

    private func takeResponse() -> String? {
        let text = String(decoding: received, as: UTF8.self)
        guard let headEnd = text.range(of: "\r\n\r\n") else { return nil }
        let head = text[..<headEnd.lowerBound]
        let length =
            head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
            .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
        let headBytes = text[..<headEnd.upperBound].utf8.count
        guard received.count >= headBytes + length else { return nil }
        let response = String(decoding: received[0..<(headBytes + length)], as: UTF8.self)
        received.removeFirst(headBytes + length)
        return response
    }
}
