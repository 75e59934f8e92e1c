import CHiredis

#if canImport(Glibc)
    import Glibc
    import HeartbeatDomain
#endif

/// One blocking hiredis connection. The only type that touches a `redisContext`.
///
/// Not `Sendable`: a connection is created, used and freed on the one thread of the
/// ``RedisPipeline`` that owns it.
final class RedisConnection {
    private let context: UnsafeMutablePointer<redisContext>
    /// What the context's reader parses replies into.
    private let tape = RedisReplyTape()

    private init(context: UnsafeMutablePointer<redisContext>) {
        self.context = context
        tape.attach(to: context.pointee.reader)
    }

    deinit {
        redisFree(context)
    }

    /// Connects, applies the command timeout, and logs in / selects the database when the endpoint says so.
    static func connect(to endpoint: RedisEndpoint, timeout: Duration) throws(RedisError) -> RedisConnection {
        let tv = Self.timeval(timeout)
        guard let context = redisConnectWithTimeout(endpoint.host, Int32(endpoint.port), tv) else {
            throw .unavailable("cannot allocate a Redis context")
        }
        if context.pointee.err != 0 {
            let error = Self.error(of: context, errno: errno)
            redisFree(context)
            throw error
        }
        let connection = RedisConnection(context: context)
        guard redisSetTimeout(context, tv) == REDIS_OK else {
            throw .unavailable("cannot set the Redis socket timeout")
        }
        let setup = endpoint.setupCommands
        if !setup.isEmpty {
            var failure: RedisError?
            let ioError = connection.pipeline(setup.map(RedisCommandEncoder.encode)) { _, reply in
                if case .error(let message) = reply { failure = .server(message) }
            }
            if let ioError { throw ioError.error }
            if let failure { throw failure }
        }
        return connection
    }

    /// A transport failure in the middle of a pipeline.
    struct PipelineFailure: Error {
        var error: RedisError
        /// How many replies were delivered before the failure.
        var delivered: Int
        /// The peer closed the connection or refused the write before answering anything: the
        /// commands were not executed, so they may be sent again on a new connection.
        var safeToRetry: Bool
    }

    /// Writes every command, then reads one reply per command, in order, handing each to `deliver`.
    ///
    /// - Parameter asking: when given, `asking[i]` sends `ASKING` right before command `i` (a cluster
    ///   `ASK` redirection); its `+OK` is read and dropped.
    /// - Returns: `nil` when every reply was read; otherwise where and why the pipeline broke.
    ///   After a failure the connection must be dropped.
    func pipeline(_ commands: [[UInt8]], asking: [Bool]? = nil, deliver: (Int, RedisValue) -> Void) -> PipelineFailure? {
        for (index, command) in commands.enumerated() {
            if asking?[index] == true, append(Self.askingCommand) != REDIS_OK {
                return PipelineFailure(error: Self.error(of: context, errno: errno), delivered: 0, safeToRetry: false)
            }
            if append(command) != REDIS_OK {
                return PipelineFailure(error: Self.error(of: context, errno: errno), delivered: 0, safeToRetry: false)
            }
        }
        for index in commands.indices {
            var reply: UnsafeMutableRawPointer?
            for read in 0..<(asking?[index] == true ? 2 : 1) {
                if let previous = reply { _ = tape.take(previous) }  // ASKING's +OK
                reply = nil
                if redisGetReply(context, &reply) != REDIS_OK || reply == nil {
                    let code = errno
                    let closedEarly =
                        index == 0 && read == 0
                        && (context.pointee.err == REDIS_ERR_EOF
                            || (context.pointee.err == REDIS_ERR_IO && (code == EPIPE || code == ECONNRESET)))
                    return PipelineFailure(error: Self.error(of: context, errno: code), delivered: index, safeToRetry: closedEarly)
                }
            }
            deliver(index, tape.take(reply!))
        }
        return nil
    }

    private static let askingCommand = RedisCommandEncoder.encode(["ASKING"])

    /// Appends one RESP-encoded command to hiredis's output buffer.
    private func append(_ command: [UInt8]) -> Int32 {
        command.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { chars in
                redisAppendFormattedCommand(context, chars.baseAddress, chars.count)
            }
        }
    }

    private static func error(of context: UnsafeMutablePointer<redisContext>, errno code: Int32) -> RedisError {
        let message = withUnsafeBytes(of: context.pointee.errstr) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        if context.pointee.err == REDIS_ERR_IO && (code == EAGAIN || code == EWOULDBLOCK || code == ETIMEDOUT || code == EINPROGRESS) {
            return .timeout
        }
        if message.contains("timed out") { return .timeout }
        return .unavailable(message.isEmpty ? "connection error \(context.pointee.err)" : message)
    }

    private static func timeval(_ duration: Duration) -> timeval {
        let micros = duration.microseconds
        return Glibc.timeval(tv_sec: Int(micros / 1_000_000), tv_usec: Int(micros % 1_000_000))
    }
}
