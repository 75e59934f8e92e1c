import Crypto

/// A Lua script run with `EVALSHA`, falling back to `EVAL` (which also caches it) when Redis
/// answers `NOSCRIPT`, e.g. after a restart or a failover.
public struct RedisScript: Sendable {
    public let name: String
    public let source: String
    public let sha1: String

    public init(name: String, source: String) {
        self.name = name
        self.source = source
        self.sha1 = Insecure.SHA1.hash(data: Array(source.utf8)).map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }
}
