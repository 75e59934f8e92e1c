import Glibc
import Logging
import NIOCore
import NIOPosix

/// One Redis connection on one NIO event loop, for callers on that loop (the gateway's heartbeat
/// handler): commands written during a tick of the loop go out in one flush, replies are parsed
/// where they are read, and each completion runs on the loop. No thread hand-off either way, which
/// a ``RedisPipeline`` needs twice per round trip (to its thread and back).
///
/// Same failure behaviour as ``RedisPipeline``: connecting and each reply are bounded by `timeout`
/// (``RedisError/timeout``; the connection is then dropped, since later replies would be out of
/// step), a lost connection fails what waits on it, and after a failed connect commands fail at
/// once for `reconnectBackoff` before the next attempt.
///
/// `@unchecked Sendable`: every stored property is only touched on `eventLoop`.
final class RedisLoopConnection: @unchecked Sendable {
    typealias Completion = @Sendable (Result<RedisValue, any Error>) -> Void

    private struct Waiter {
        let deadline: NIODeadline
        let completion: Completion
    }

    private enum State {
        case idle
        case connecting(queued: [(command: [UInt8], completion: Completion)])
        case ready(any Channel)
        case backingOff(until: NIODeadline, error: RedisError)
        case closed
    }

    let eventLoop: any EventLoop
    private let endpoint: RedisEndpoint
    private let timeout: TimeAmount
    private let reconnectBackoff: TimeAmount
    private let logger: Logger

    private var state = State.idle
    /// Completions of the commands written, in order: replies come back in that order.
    private var waiting = CircularBuffer<Waiter>()
    private var flushScheduled = false
    private var timer: Scheduled<Void>?
    /// Since the last failed connect: logged once, like ``RedisPipeline``, not at every retry.
    private var failing = false

    init(eventLoop: any EventLoop, endpoint: RedisEndpoint, timeout: Duration, reconnectBackoff: Duration, logger: Logger) {
        self.eventLoop = eventLoop
        self.endpoint = endpoint
        self.timeout = .nanoseconds(Int64(timeout.nanoseconds))
        self.reconnectBackoff = .nanoseconds(Int64(reconnectBackoff.nanoseconds))
        self.logger = logger
    }

    /// Sends one RESP-encoded command; `completion` runs on the loop with its reply (error replies
    /// as ``RedisValue/error(_:)``) or a ``RedisError``. From another thread it hops to the loop first.
    func send(_ command: [UInt8], completion: @escaping Completion) {
        guard eventLoop.inEventLoop else {
            eventLoop.execute { self.send(command, completion: completion) }
            return
        }
        switch state {
        case .ready(let channel):
            write(command, completion, on: channel)
        case .connecting(var queued):
            queued.append((command, completion))
            state = .connecting(queued: queued)
        case .backingOff(let until, let error) where NIODeadline.now() < until:
            completion(.failure(error))
        case .closed:
            completion(.failure(RedisError.shutdown))
        case .idle, .backingOff:
            state = .connecting(queued: [(command, completion)])
            connect()
        }
    }

    /// Closes the connection; what waits fails with ``RedisError/shutdown``, and so does every later command.
    func close() {
        eventLoop.assertInEventLoop()
        let current = state
        state = .closed
        switch current {
        case .ready(let channel): channel.close(promise: nil)
        case .connecting(let queued): for (_, completion) in queued { completion(.failure(RedisError.shutdown)) }
        case .idle, .backingOff, .closed: break
        }
        failWaiting(RedisError.shutdown)
    }

    // MARK: Connecting

    private func connect() {
        ClientBootstrap(group: eventLoop)
            .connectTimeout(timeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(RedisReplyDecoder(connection: self))
                }
            }
            .connect(host: endpoint.host, port: endpoint.port)
            .whenComplete { [self] result in connected(result) }
    }

    private func connected(_ result: Result<any Channel, any Error>) {
        guard case .connecting(let queued) = state else {
            // closed meanwhile
            if case .success(let channel) = result { channel.close(promise: nil) }
            return
        }
        switch result {
        case .failure(let error):
            let failure = Self.connectFailure(error)
            if !failing { logger.error("Redis connect failed", metadata: ["error": "\(failure)"]) }
            failing = true
            state = .backingOff(until: .now() + reconnectBackoff, error: failure)
            for (_, completion) in queued { completion(.failure(failure)) }
        case .success(let channel):
            state = .ready(channel)
            if failing { logger.info("Redis connection restored", metadata: ["endpoint": "\(endpoint.host):\(endpoint.port)"]) }
            failing = false
            for setup in endpoint.setupCommands {
                write(
                    RedisCommandEncoder.encode(setup),
                    { [self] reply in
                        guard case .success(.error(let message)) = reply else { return }
                        // a wrong password or database: nothing on this connection can work, nor on the next for a while
                        logger.error("Redis refused the connection's setup", metadata: ["error": "\(message)"])
                        state = .backingOff(until: .now() + reconnectBackoff, error: .server(message))
                        failWaiting(RedisError.server(message))
                        channel.close(promise: nil)
                    }, on: channel)
            }
            for (command, completion) in queued { write(command, completion, on: channel) }
        }
    }

    /// What a failed connect says, as short as ``RedisConnection``'s messages ("Connection refused").
    private static func connectFailure(_ error: any Error) -> RedisError {
        if case ChannelError.connectTimeout = error { return .timeout }
        if let connect = error as? NIOConnectionError, let io = connect.connectionErrors.first?.error as? IOError {
            return .unavailable(String(cString: strerror(io.errnoCode)))
        }
        return .unavailable("\(error)")
    }

    // MARK: Writing and replies

    private func write(_ command: [UInt8], _ completion: @escaping Completion, on channel: any Channel) {
        waiting.append(Waiter(deadline: .now() + timeout, completion: completion))
        channel.write(channel.allocator.buffer(bytes: command), promise: nil)
        if !flushScheduled {
            // after the loop's current tick: every command written in it goes out in one write
            flushScheduled = true
            eventLoop.execute { [self] in
                flushScheduled = false
                if case .ready(let current) = state { current.flush() }
            }
        }
        if timer == nil { armTimer() }
    }

    /// A reply read from `channel`: it answers the oldest command written.
    fileprivate func replied(_ value: RedisValue, on channel: any Channel) {
        guard isCurrent(channel) else { return }
        guard let waiter = waiting.popFirst() else {
            logger.error("Redis sent a reply nobody waits for; reconnecting")
            channel.close(promise: nil)
            return
        }
        if waiting.isEmpty {
            timer?.cancel()
            timer = nil
        }
        waiter.completion(.success(value))
    }

    /// `channel` closed (by either side) or failed.
    fileprivate func lost(_ channel: any Channel) {
        guard isCurrent(channel) else { return }
        logger.warning("Redis connection lost", metadata: ["endpoint": "\(endpoint.host):\(endpoint.port)"])
        state = .idle
        failWaiting(RedisError.unavailable("Redis closed the connection"))
    }

    private func isCurrent(_ channel: any Channel) -> Bool {
        guard case .ready(let current) = state else { return false }
        return current === channel
    }

    private func failWaiting(_ error: RedisError) {
        timer?.cancel()
        timer = nil
        while let waiter = waiting.popFirst() { waiter.completion(.failure(error)) }
    }

    /// Checks the oldest command's deadline when it falls due.
    private func armTimer() {
        guard let oldest = waiting.first else { return }
        timer = eventLoop.scheduleTask(deadline: oldest.deadline) { [self] in
            timer = nil
            guard let oldest = waiting.first else { return }
            guard oldest.deadline <= .now() else { return armTimer() }
            // replies after this one would answer the wrong commands: start over on a new connection
            // (state and waiters first: closing runs `lost` at once, which would fail them otherwise)
            let timedOut = state
            state = .idle
            failWaiting(.timeout)
            if case .ready(let channel) = timedOut { channel.close(promise: nil) }
        }
    }
}

/// Parses RESP replies (``RedisReplyReader``) and hands each to its ``RedisLoopConnection``.
private final class RedisReplyDecoder: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let connection: RedisLoopConnection
    private let reader = RedisReplyReader()

    init(connection: RedisLoopConnection) {
        self.connection = connection
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        guard buffer.withUnsafeReadableBytes({ reader.feed($0) }) else { return context.close(promise: nil) }
        while true {
            let reply: RedisValue?
            do {
                reply = try reader.next()
            } catch {
                connection.lost(context.channel)
                return context.close(promise: nil)
            }
            guard let reply else { return }
            connection.replied(reply, on: context.channel)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        connection.lost(context.channel)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        connection.lost(context.channel)
        context.close(promise: nil)
    }
}
