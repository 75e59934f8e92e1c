import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A TCP proxy on a loopback port that a test can cut (every connection closed, new ones refused)
/// and restore, to break one process's path to a server while others keep theirs.
final class TCPProxy: Sendable {
    let port: Int
    let targetPort: Int
    private let state = NIOLockedValueBox<(server: (any Channel)?, connections: [any Channel])>((nil, []))

    var url: String { "redis://127.0.0.1:\(port)" }

    private init(port: Int, targetPort: Int) {
        self.port = port
        self.targetPort = targetPort
    }

    /// Starts a proxy to `127.0.0.1:targetPort` on a free port.
    static func start(to targetPort: Int) async throws -> TCPProxy {
        for _ in 0..<20 {
            let proxy = TCPProxy(port: Int.random(in: 45_000..<50_000), targetPort: targetPort)
            if (try? await proxy.restore()) != nil { return proxy }
        }
        throw TestFailure("no free port for the proxy")
    }

    /// (Re)opens the listener.
    func restore() async throws {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [targetPort] inbound in
                ClientBootstrap(group: inbound.eventLoop).connect(host: "127.0.0.1", port: targetPort).flatMap { outbound in
                    self.state.withLockedValue { $0.connections += [inbound, outbound] }
                    return outbound.pipeline.addHandler(Relay(to: inbound)).flatMap {
                        inbound.pipeline.addHandler(Relay(to: outbound))
                    }
                }
            }
            .bind(host: "127.0.0.1", port: port).get()
        state.withLockedValue { $0.server = server }
    }

    /// Closes the listener and every proxied connection.
    func cut() async {
        let (server, connections) = state.withLockedValue { state in
            defer { state = (nil, []) }
            return (state.server, state.connections)
        }
        try? await server?.close()
        for connection in connections { try? await connection.close() }
    }

    /// Copies what one side reads to the other, and closes the other when one side closes.
    private final class Relay: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let partner: any Channel
        init(to partner: any Channel) { self.partner = partner }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            partner.writeAndFlush(unwrapInboundIn(data), promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            partner.close(promise: nil)
        }
    }
}
