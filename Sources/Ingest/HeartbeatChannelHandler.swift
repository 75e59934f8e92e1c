import HTTPTypes
import HeartbeatDomain
import Hummingbird
import Logging
import Metrics
import NIOCore
import NIOHTTPTypes
import ServerSupport

/// Serves `POST /api/v1/devices/{id}/heartbeat` on the connection's event loop, below Hummingbird's
/// router, on connections ``HeartbeatWireHandler`` handed over to the HTTP/1 pipeline (a client
/// that also sent another route, or a form of the request the wire handler leaves alone); every
/// other request passes through to Hummingbird untouched.
///
/// Why: through the router, a heartbeat costs a Swift task hop per request part and per response
/// write (NIO's async channel, the request-body stream), the router's trie and the middleware
/// chain: most of the gateway's CPU per heartbeat (see `docs/performance.md`). Here the request
/// parts arrive as NIO reads, the store call completes on the event loop, and the response is
/// three writes and a flush.
///
/// The exchange is the route's: the same ``HeartbeatController`` steps in the same order, and
/// ``HeartbeatAnswer``'s statuses, bodies, headers and metrics. Requests answered here and requests
/// passed on are answered in the order they came (HTTP pipelining): while one is being answered,
/// the parts of the next wait here and reads pause.
///
/// Sits after Hummingbird's `HTTPConnectionStateHandler`, which so sees these requests too (idle
/// timeout, close after the response at graceful shutdown).
final class HeartbeatChannelHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    /// What every connection's handler shares (``HeartbeatWireHandler``'s too).
    struct Route: Sendable {
        let controller: HeartbeatController<BasicRequestContext>
        let requestMetrics: RequestMetricsMiddleware<BasicRequestContext>
        let serverName: String
        let logger: Logger
        /// `http_requests_total` for a `200`, the common answer, looked up once.
        let okCounter: Counter

        init(
            controller: HeartbeatController<BasicRequestContext>, requestMetrics: RequestMetricsMiddleware<BasicRequestContext>,
            serverName: String, logger: Logger
        ) {
            self.controller = controller
            self.requestMetrics = requestMetrics
            self.serverName = serverName
            self.logger = logger
            self.okCounter = requestMetrics.counter(route: HeartbeatController<BasicRequestContext>.route, method: .post, status: 200)
        }

        /// `http_requests_total` for the route and `status`.
        func counter(status: HTTPResponse.Status) -> Counter {
            requestMetrics.counter(route: HeartbeatController<BasicRequestContext>.route, method: .post, status: status.code)
        }

        /// Records `heartbeat` over the loop's own Redis connection; `answered` runs on the loop
        /// with the answer to write.
        func record(
            _ heartbeat: HeartbeatPayload, token: String, on eventLoop: any EventLoop,
            answered: @escaping @Sendable (HeartbeatAnswer) -> Void
        ) {
            controller.store.record(heartbeat, tokenHash: DeviceToken.hash(token), on: eventLoop) { [self] result in
                answered(HeartbeatAnswer(result, of: heartbeat, route: self))
            }
        }
    }

    /// The request being answered.
    private enum Exchange {
        /// A heartbeat read here.
        case heartbeat(Heartbeat)
        /// A request passed on to Hummingbird.
        case passedOn(requestEnded: Bool, responseEnded: Bool)
    }

    private struct Heartbeat {
        let started: ContinuousClock.Instant
        var checked: (pathID: DeviceID, token: String)?
        var body: ByteBuffer?
        var requestEnded = false
        /// The response is decided (written, or waiting for the store); later body parts are dropped.
        var answered = false
        var responseEnded = false
    }

    private let route: Route
    private var exchange: Exchange?
    /// Parts of requests that came while the one before was being answered.
    private var waiting = CircularBuffer<HTTPRequestPart>()
    private var readPending = false
    /// A close from Hummingbird (its request loop ends when the client half-closes) held until the
    /// heartbeat being answered is written.
    private var closePending: (mode: CloseMode, promise: EventLoopPromise<Void>?)?
    private var context: ChannelHandlerContext?

    init(route: Route) {
        self.route = route
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        // the connection went before its heartbeat was answered: no longer in flight, and a store
        // reply still to come finds nothing to answer
        if case .heartbeat(let heartbeat) = exchange, !heartbeat.responseEnded {
            route.requestMetrics.abandoned()
        }
        exchange = nil
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        if waiting.isEmpty && acceptsPart {
            process(part, context: context)
        } else {
            waiting.append(part)
        }
    }

    /// Whether a part can be handled now: no exchange, or one whose request is still arriving.
    private var acceptsPart: Bool {
        switch exchange {
        case nil: true
        case .heartbeat(let heartbeat): !heartbeat.requestEnded
        case .passedOn(let requestEnded, _): !requestEnded
        }
    }

    private func process(_ part: HTTPRequestPart, context: ChannelHandlerContext) {
        switch (exchange, part) {
        case (nil, .head(let request)):
            if let rawID = Self.heartbeatDeviceID(request) {
                exchange = .heartbeat(Heartbeat(started: .now))
                route.requestMetrics.started()
                do {
                    let checked = try route.controller.checkHead(
                        contentLength: request.headerFields[.contentLength], rawID: rawID,
                        authorization: request.headerFields[.authorization])
                    update { $0.checked = checked }
                } catch {
                    answer(error, context: context)
                }
            } else {
                exchange = .passedOn(requestEnded: false, responseEnded: false)
                context.fireChannelRead(wrapInboundOut(part))
            }
        case (.heartbeat(var heartbeat), .body(let bytes)):
            guard !heartbeat.answered else { return }
            if heartbeat.body == nil {
                heartbeat.body = bytes  // the common case: the whole body in the first read, not copied
            } else {
                heartbeat.body!.writeImmutableBuffer(bytes)
            }
            exchange = .heartbeat(heartbeat)
            if heartbeat.body!.readableBytes > route.controller.maxBodyBytes {
                answer(APIError.bodyTooLarge(limit: route.controller.maxBodyBytes), context: context)  // drops the body
            }
        case (.heartbeat(var heartbeat), .end):
            heartbeat.requestEnded = true
            exchange = .heartbeat(heartbeat)
            if heartbeat.answered {
                finishIfDone(context: context)
            } else if let checked = heartbeat.checked {
                record(body: heartbeat.body ?? ByteBuffer(), checked: checked, context: context)
            }
        case (.passedOn(_, let responseEnded), .end):
            exchange = .passedOn(requestEnded: true, responseEnded: responseEnded)
            context.fireChannelRead(wrapInboundOut(part))
            finishIfDone(context: context)
        case (.passedOn, _), (nil, _):
            context.fireChannelRead(wrapInboundOut(part))
        case (.heartbeat, .head):
            // cannot happen (a head before the last request's end): the HTTP decoder would have failed
            context.close(promise: nil)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.fireChannelReadComplete()
    }

    // MARK: Recording

    private func record(body: ByteBuffer, checked: (pathID: DeviceID, token: String), context: ChannelHandlerContext) {
        let heartbeat: HeartbeatPayload
        do {
            heartbeat = try route.controller.decode(body, pathID: checked.pathID)
        } catch {
            answer(error, context: context)
            return
        }
        update { $0.answered = true }
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        route.record(heartbeat, token: checked.token, on: context.eventLoop) { handler.value.recorded($0) }
    }

    private func recorded(_ answer: HeartbeatAnswer) {
        guard let context, case .heartbeat = exchange else { return }
        write(answer, context: context)
    }

    // MARK: Answering

    private func answer(_ error: APIError, context: ChannelHandlerContext) {
        write(HeartbeatAnswer(error), context: context)
    }

    /// Writes the response as Hummingbird would (``HeartbeatAnswer/fields(serverName:)``), counts
    /// it, and moves on to what waits.
    private func write(_ answer: HeartbeatAnswer, context: ChannelHandlerContext) {
        guard case .heartbeat(let heartbeat) = exchange else { return }
        let head = HTTPResponse(status: answer.status, headerFields: answer.fields(serverName: route.serverName))
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(answer.body)), promise: nil)
        context.write(wrapOutboundOut(.end(nil)), promise: nil)
        context.flush()

        answer.count(since: heartbeat.started, route: route)
        update {
            $0.answered = true
            $0.responseEnded = true
            $0.body = nil
        }
        finishIfDone(context: context)
    }

    private func update(_ change: (inout Heartbeat) -> Void) {
        guard case .heartbeat(var heartbeat) = exchange else { return }
        change(&heartbeat)
        exchange = .heartbeat(heartbeat)
    }

    /// Once the request has been read and its response written, handles what waited meanwhile.
    private func finishIfDone(context: ChannelHandlerContext) {
        switch exchange {
        case .heartbeat(let heartbeat) where heartbeat.requestEnded && heartbeat.responseEnded: break
        case .passedOn(true, true): break
        default: return
        }
        exchange = nil
        let drained = !waiting.isEmpty
        while !waiting.isEmpty && acceptsPart {
            process(waiting.removeFirst(), context: context)
        }
        if drained { context.fireChannelReadComplete() }  // what was passed on is delivered at read complete
        guard exchange == nil || acceptsPart else { return }
        if let (mode, promise) = closePending {
            closePending = nil
            context.close(mode: mode, promise: promise)
        }
        if readPending && waiting.isEmpty {
            readPending = false
            context.read()
        }
    }

    // MARK: Outbound

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        context.write(data, promise: promise)
        if case .passedOn(let requestEnded, false) = exchange, case .end = unwrapOutboundIn(data) {
            exchange = .passedOn(requestEnded: requestEnded, responseEnded: true)
            finishIfDone(context: context)
        }
    }

    func read(context: ChannelHandlerContext) {
        if waiting.isEmpty {
            context.read()
        } else {
            readPending = true
        }
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if mode != .input, case .heartbeat(let heartbeat) = exchange, !heartbeat.responseEnded {
            closePending = (mode, promise)
            return
        }
        context.close(mode: mode, promise: promise)
    }

    // MARK: Matching

    /// The `{id}` of `POST /api/v1/devices/{id}/heartbeat` (query ignored, as the router does), when
    /// the request is one to answer here; `nil` passes it on: other routes, percent-encoded paths,
    /// `Connection` other than keep-alive (Hummingbird closes after `close`), `Expect`.
    static func heartbeatDeviceID(_ request: HTTPRequest) -> Substring? {
        guard request.method == .post, let path = request.path else { return nil }
        let prefix = "/api/v1/devices/".utf8
        let suffix = "/heartbeat".utf8
        let bytes = path.utf8
        let end = bytes.firstIndex(of: UInt8(ascii: "?")) ?? bytes.endIndex
        let length = bytes.distance(from: bytes.startIndex, to: end)
        guard length > prefix.count + suffix.count, bytes.starts(with: prefix),
            bytes[..<end].reversed().starts(with: suffix.reversed())
        else { return nil }
        let idStart = bytes.index(bytes.startIndex, offsetBy: prefix.count)
        let idEnd = bytes.index(end, offsetBy: -suffix.count)
        // ASCII letters, digits and hyphens only (a UUID or not, the answer is then the route's own);
        // anything else, percent-encoding included, is left to the router.
        for byte in bytes[idStart..<idEnd] {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "-"):
                continue
            default: return nil
            }
        }
        if let connection = request.headerFields[.connection], connection.lowercased() != "keep-alive" { return nil }
        if request.headerFields[.expect] != nil { return nil }
        return Substring(path)[idStart..<idEnd]
    }
}
