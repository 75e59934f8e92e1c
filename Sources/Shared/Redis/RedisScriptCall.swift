import HeartbeatDomain

/// One call of a script, written in RESP as its keys and arguments are appended: an `EVALSHA`,
/// and the `EVAL` with the script's source to send instead after a `NOSCRIPT` reply.
///
/// Why: a heartbeat's call used to pass through three arrays of strings (keys, arguments, the
/// `EVALSHA` command) before its bytes were written; appending each string straight to the bytes
/// saves the arrays, their copies and the retains and releases of every element.
public struct RedisScriptCall: Sendable {
    public let script: RedisScript
    /// `EVALSHA sha numkeys key… argument…`, encoded.
    public private(set) var evalsha: [UInt8]
    /// The key that decides the cluster slot: the first key appended (`nil`: no keys).
    public private(set) var routingKey: String?
    /// Where the key count starts: what follows the script's hash, shared with the `EVAL` form.
    private let tail: Int
    private let count: Int
    /// Keys and arguments still to append.
    private var missing: Int

    /// A call with `keys` keys and `arguments` arguments, to append in that order (keys first).
    public init(_ script: RedisScript, keys: Int, arguments: Int, capacity: Int = 256) {
        self.script = script
        self.count = 3 + keys + arguments
        var bytes = [UInt8]()
        bytes.reserveCapacity(capacity)
        RedisCommandEncoder.appendArrayHeader(count: count, to: &bytes)
        RedisCommandEncoder.appendBulk("EVALSHA", to: &bytes)
        RedisCommandEncoder.appendBulk(script.sha1, to: &bytes)
        self.tail = bytes.count
        RedisCommandEncoder.appendBulk(String(keys), to: &bytes)
        self.evalsha = bytes
        self.missing = keys + arguments
    }

    /// The call of `script` with `keys` and `arguments`.
    public init(_ script: RedisScript, keys: [String], arguments: [String]) {
        self.init(script, keys: keys.count, arguments: arguments.count, capacity: 128 + (keys + arguments).reduce(0) { $0 + $1.utf8.count + 16 })
        for key in keys { appendKey(key) }
        for argument in arguments { append(argument) }
    }

    /// Appends the next key.
    public mutating func appendKey(_ key: String) {
        appendKey(key, "")
    }

    /// Appends the next key, `prefix` followed by `rest` (a per-bucket prefix and a device id), as
    /// one argument without building it as a string first.
    public mutating func appendKey(_ prefix: String, _ rest: String) {
        missing -= 1
        if routingKey == nil { routingKey = prefix + rest }
        RedisCommandEncoder.appendBulk(prefix, rest, to: &evalsha)
    }

    /// Appends the next argument.
    public mutating func append(_ argument: String) {
        missing -= 1
        RedisCommandEncoder.appendBulk(argument, to: &evalsha)
    }

    /// Whether every key and argument announced has been appended (a call sent short or long would
    /// be read by Redis as a different command).
    public var isComplete: Bool { missing == 0 }

    /// `EVAL source numkeys key… argument…`: the same call with the script's source, which also
    /// caches it again.
    public var eval: [UInt8] {
        var bytes = [UInt8]()
        bytes.reserveCapacity(script.source.utf8.count + evalsha.count)
        RedisCommandEncoder.appendArrayHeader(count: count, to: &bytes)
        RedisCommandEncoder.appendBulk("EVAL", to: &bytes)
        RedisCommandEncoder.appendBulk(script.source, to: &bytes)
        bytes.append(contentsOf: evalsha[tail...])
        return bytes
    }
}
