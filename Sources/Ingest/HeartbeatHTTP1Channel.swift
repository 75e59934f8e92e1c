import HummingbirdCore
import Logging
import NIOCore

/// Hummingbird's HTTP/1 channel with ``HeartbeatChannelHandler`` added right after its connection
/// state handler, where Hummingbird's own `additionalChannelHandlers` cannot go (those come before
/// it, so the idle timeout and graceful close would not see the heartbeats answered there).
struct HeartbeatHTTP1Channel: ServerChildChannel {
    let http1: HTTP1Channel
    let route: HeartbeatChannelHandler.Route

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<HTTP1Channel.Value> {
        http1.setup(channel: channel, logger: logger).flatMapThrowing { value in
            let operations = channel.pipeline.syncOperations
            let connectionState = try operations.handler(type: HTTPConnectionStateHandler.self)
            try operations.addHandler(HeartbeatChannelHandler(route: route), position: .after(connectionState))
            return value
        }
    }

    func handle(value: HTTP1Channel.Value, logger: Logger) async {
        await http1.handle(value: value, logger: logger)
    }
}

extension HTTPServerBuilder {
    /// HTTP/1 with heartbeats answered on the event loop (see ``HeartbeatChannelHandler``).
    static func http1(configuration: HTTP1Channel.Configuration, heartbeats route: HeartbeatChannelHandler.Route) -> HTTPServerBuilder {
        .init { responder in
            HeartbeatHTTP1Channel(http1: HTTP1Channel(responder: responder, configuration: configuration), route: route)
        }
    }
}
