import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypesHTTP1

/// Hummingbird's HTTP/1 channel with heartbeats answered on the event loop: a connection starts
/// with ``HeartbeatWireHandler`` alone, which answers the heartbeats it reads and, at the first
/// request it does not take, adds the HTTP/1 pipeline Hummingbird's `HTTP1Channel` builds (with
/// ``HeartbeatChannelHandler`` right after its connection state handler) and hands it the bytes.
struct HeartbeatHTTP1Channel: ServerChildChannel {
    let http1: HTTP1Channel
    let route: HeartbeatChannelHandler.Route

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<HTTP1Channel.Value> {
        channel.eventLoop.makeCompletedFuture {
            let configuration = http1.configuration
            let route = route
            let wire = HeartbeatWireHandler(route: route, idleTimeout: configuration.idleTimeout) { context in
                try Self.addHTTP1Handlers(after: context.handler, to: context.pipeline.syncOperations, configuration, route: route, logger: logger)
            }
            try channel.pipeline.syncOperations.addHandler(wire)
            return try NIOAsyncChannel(wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true))
        }
    }

    func handle(value: HTTP1Channel.Value, logger: Logger) async {
        await http1.handle(value: value, logger: logger)
    }

    /// What `HTTP1Channel.setup` adds (NIO's HTTP/1 server codec, the `HTTPTypes` conversion, the
    /// configuration's own handlers, the connection state handler), in its order, with its settings,
    /// then ``HeartbeatChannelHandler``; all after `handler`.
    private static func addHTTP1Handlers(
        after handler: any ChannelHandler, to pipeline: ChannelPipeline.SynchronousOperations, _ configuration: HTTP1Channel.Configuration,
        route: HeartbeatChannelHandler.Route, logger: Logger
    ) throws {
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderFieldSize = configuration.httpDecoder.maxHeaderFieldSize
        limits.maxHeaderListSize = configuration.httpDecoder.maxHeaderListSize
        limits.maxHeaderFieldCount = configuration.httpDecoder.maxHeaderFieldCount
        // each added right after `handler`, so in reverse order
        try pipeline.addHandler(HeartbeatChannelHandler(route: route), position: .after(handler))
        try pipeline.addHandler(
            HTTPConnectionStateHandler(idleTimeout: configuration.idleTimeout.map { .init($0) }, logger: logger), position: .after(handler))
        for additional in configuration.additionalChannelHandlers().reversed() {
            try pipeline.addHandler(additional, position: .after(handler))
        }
        try pipeline.addHandler(HTTP1ToHTTPServerCodec(secure: false), position: .after(handler))
        try pipeline.configureHTTPServerPipeline(
            position: .after(handler), withPipeliningAssistance: false, withErrorHandling: false, withOutboundHeaderValidation: false,
            withEncoderConfiguration: .init(), withDecoderLimitConfiguration: limits)
    }
}

extension HTTPServerBuilder {
    /// HTTP/1 with heartbeats answered on the event loop (see ``HeartbeatHTTP1Channel``).
    static func http1(configuration: HTTP1Channel.Configuration, heartbeats route: HeartbeatChannelHandler.Route) -> HTTPServerBuilder {
        .init { responder in
            HeartbeatHTTP1Channel(http1: HTTP1Channel(responder: responder, configuration: configuration), route: route)
        }
    }
}
