import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A bare TCP exchange on loopback: sends bytes, returns what arrives before the peer stops
/// talking or `timeout` passes. For checks an HTTP client would hide (a server answering before
/// the body it was promised has been sent).
enum RawSocket {
    static func exchange(port: Int, send bytes: [UInt8], timeout: Duration) -> [UInt8]? {
        guard let fd = open(port: port) else { return nil }
        defer { close(fd) }
        let (seconds, attoseconds) = timeout.components
        var tv = timeval(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        guard bytes.withUnsafeBytes({ Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == bytes.count else { return nil }
        var received = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 4096)
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            received += buffer[0..<n]
            if received.count > 3, String(decoding: received, as: UTF8.self).contains("\r\n\r\n") || received.last == 10 {
                // enough for a status line / a RESP reply; keep reading briefly for the rest
                tv = timeval(tv_sec: 0, tv_usec: 50_000)
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            }
        }
        return received.isEmpty ? nil : received
    }

    /// A connected socket to `127.0.0.1:port` (close it with `close`), or nil.
    static func open(port: Int) -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            close(fd)
            return nil
        }
        return fd
    }

    /// Sends `text` on `fd` and closes it without reading anything.
    static func sendAndClose(_ fd: Int32, _ text: String) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        close(fd)
    }
}
