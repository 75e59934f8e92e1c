import HTTPTypes
import HeartbeatDomain
import Hummingbird
import NIOCore
import ServerSupport

/// Answers heartbeats straight from a connection's bytes, ahead of any HTTP handler; the first
/// request it does not take hands the connection, with its unread bytes, to Hummingbird's HTTP/1
/// pipeline for good.
///
/// Why: with heartbeats answered on the event loop (``HeartbeatChannelHandler``), most of the
/// gateway's own CPU per heartbeat was NIO's HTTP/1 decoder and encoder, the `HTTPTypes`
/// conversions and the handlers between them (`docs/performance.md`, fifth round). A player's
/// connection carries nothing but heartbeats, in the one plain form ``HeartbeatWireRequest`` reads.
///
/// The exchange is the route's: ``HeartbeatController``'s steps in its order, ``HeartbeatAnswer``'s
/// statuses, bodies and headers, byte for byte what the HTTP/1 pipeline writes (a test compares
/// them). Requests are answered in order: while one waits for Redis, the bytes after it wait here
/// and reads pause. Until the hand-over this handler also keeps the connection rules Hummingbird's
/// `HTTPConnectionStateHandler` keeps: the idle timeout, a close after the response in flight at
/// graceful shutdown, the answer to a client that half-closed after its request.
final class HeartbeatWireHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let route: HeartbeatChannelHandler.Route
    private let idleTimeout: TimeAmount?
    /// Adds the HTTP/1 pipeline after this handler.
    private let addHTTP1: (ChannelHandlerContext) throws -> Void
    /// Bytes read and not yet answered.
    private var unread: ByteBuffer?
    /// When the heartbeat waiting for the store started.
    private var inFlight: ContinuousClock.Instant?
    private var readPending = false
    private var inputClosed = false
    /// Graceful shutdown: close once the request being read or answered is answered.
    private var closeWhenAnswered = false
    private var closing = false
    private var lastActive = NIODeadline.now()
    private var idleCheck: Scheduled<Void>?
    private var context: ChannelHandlerContext?

    init(route: HeartbeatChannelHandler.Route, idleTimeout: TimeAmount?, addHTTP1: @escaping (ChannelHandlerContext) throws -> Void) {
        self.route = route
        self.idleTimeout = idleTimeout
        self.addHTTP1 = addHTTP1
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { scheduleIdleCheck(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        scheduleIdleCheck(context: context)
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        idleCheck?.cancel()
        idleCheck = nil
        // the connection went before its heartbeat was answered: no longer in flight, and a store
        // reply still to come finds nothing to answer
        if inFlight != nil { route.requestMetrics.abandoned() }
        inFlight = nil
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        lastActive = .now()
        if unread == nil {
            unread = bytes  // the common case: a whole request in one read, not copied
        } else {
            unread!.writeBuffer(&bytes)
        }
        answerUnread(context: context)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case ChannelEvent.inputClosed:
            inputClosed = true
            answerUnread(context: context)
        case is ChannelShouldQuiesceEvent:
            // as Hummingbird's connection state handler: a request being read or answered is
            // answered first
            if inFlight == nil, (unread?.readableBytes ?? 0) == 0 {
                close(context: context)
            } else {
                closeWhenAnswered = true
            }
        default:
            context.fireUserInboundEventTriggered(event)
        }
    }

    /// Answers the requests read, in order, until one waits for the store, more bytes are needed,
    /// or one is not for this handler (then the connection is handed over).
    private func answerUnread(context: ChannelHandlerContext) {
        while inFlight == nil, !closing, self.context != nil {
            guard let bytes = unread, bytes.readableBytes > 0 else {
                unread = nil
                if inputClosed {
                    close(context: context)
                } else if readPending {
                    readPending = false
                    context.read()
                }
                return
            }
            switch HeartbeatWireRequest.scan(bytes, maxBodyBytes: route.controller.maxBodyBytes) {
            case .incomplete where !inputClosed:
                if readPending {
                    readPending = false
                    context.read()
                }
                return
            case .incomplete, .notHandled:
                handOver(context: context)
                return
            case .request(let request, let length):
                unread!.moveReaderIndex(forwardBy: length)
                answer(request, context: context)
            }
        }
    }

    private func answer(_ request: HeartbeatWireRequest, context: ChannelHandlerContext) {
        let started = ContinuousClock.now
        route.requestMetrics.started()
        let heartbeat: HeartbeatPayload
        let token: String
        do throws(APIError) {
            let checked = try route.controller.checkHead(
                contentLength: request.contentLength, rawID: request.rawID, authorization: request.authorization)
            heartbeat = try route.controller.decode(request.body, pathID: checked.0)
            token = checked.token
        } catch {
            write(HeartbeatAnswer(error), started: started, context: context)
            return
        }
        inFlight = started
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        route.record(heartbeat, token: token, on: context.eventLoop) { handler.value.recorded($0) }
    }

    private func recorded(_ answer: HeartbeatAnswer) {
        guard let context, let started = inFlight else { return }
        inFlight = nil
        write(answer, started: started, context: context)
        answerUnread(context: context)
    }

    private func write(_ answer: HeartbeatAnswer, started: ContinuousClock.Instant, context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(answer.http1(serverName: route.serverName)), promise: nil)
        answer.count(since: started, route: route)
        lastActive = .now()
        if closeWhenAnswered { close(context: context) }
    }

    // MARK: Hand-over

    /// Adds the HTTP/1 pipeline, gives it what is unread (and the half-close, if it came), and
    /// leaves the connection to it.
    private func handOver(context: ChannelHandlerContext) {
        do {
            try addHTTP1(context)
        } catch {
            context.fireErrorCaught(error)
            close(context: context)
            return
        }
        if let bytes = unread {
            unread = nil
            context.fireChannelRead(wrapInboundOut(bytes))
            context.fireChannelReadComplete()
        }
        if inputClosed { context.fireUserInboundEventTriggered(ChannelEvent.inputClosed) }
        if readPending {
            readPending = false
            context.read()
        }
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    private func close(context: ChannelHandlerContext) {
        guard !closing else { return }
        closing = true
        context.close(promise: nil)
    }

    // MARK: Outbound

    /// Reads go on while a heartbeat waits for the store (a player sends its next one only after
    /// the answer, so nothing comes meanwhile; pausing and resuming cost two `epoll_ctl` calls per
    /// heartbeat, ~2% of the gateway's samples); a client that pipelines past `maxUnreadBytes`
    /// waits until what it sent is answered.
    func read(context: ChannelHandlerContext) {
        if inFlight != nil, let unread, unread.readableBytes >= Self.maxUnreadBytes {
            readPending = true
        } else {
            context.read()
        }
    }

    /// Unanswered bytes past which reads pause while a heartbeat is in flight.
    static let maxUnreadBytes = 16 * 1024

    // MARK: Idle timeout

    /// Closes the connection after `idleTimeout` without a read or an answer, unless a heartbeat is
    /// waiting for the store (as Hummingbird's connection state handler does).
    private func scheduleIdleCheck(context: ChannelHandlerContext) {
        guard let idleTimeout, idleCheck == nil else { return }
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        idleCheck = context.eventLoop.scheduleTask(deadline: lastActive + idleTimeout) {
            handler.value.idleCheckFired()
        }
    }

    private func idleCheckFired() {
        idleCheck = nil
        guard let context, let idleTimeout else { return }
        if inFlight != nil {
            lastActive = .now()
        } else if NIODeadline.now() >= lastActive + idleTimeout {
            close(context: context)
            return
        }
        scheduleIdleCheck(context: context)
    }
}
