import Configuration
import Foundation
import HTTPTypes
import HeartbeatDomain
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import RedisAdapter
import ServerSupport

@testable import Ingest
@testable import Monitor

/// A gateway on a private Redis, with a registry writer and an inspection client.
struct GatewayHarness {
    let server: RedisServer
    let redis: RedisClient
    let keys = KeySchema(buckets: 4)
    let registry: DeviceRegistryCache

    static func start(appendOnly: Bool = false) async throws -> GatewayHarness {
        let server = try await RedisServer.start(appendOnly: appendOnly)
        let redis = server.client()
        let registry = DeviceRegistryCache(redis: redis, keys: KeySchema(buckets: 4))
        try await registry.markLoaded(buckets: Array(registry.keys.allBuckets))  // what the monitor does when it seeds
        return GatewayHarness(server: server, redis: redis, registry: registry)
    }

    func configuration(_ extra: [String: String] = [:]) throws -> IngestConfiguration {
        var environment = [
            "HTTP_HOST": "127.0.0.1", "HTTP_PORT": "0", "REDIS_URL": server.url, "BUCKETS": "4",
            "HEARTBEAT_MIN_INTERVAL_SECONDS": "0", "REDIS_TIMEOUT_SECONDS": "0.5",
        ]
        environment.merge(extra) { $1 }
        return try IngestConfiguration(reader: ConfigReader(provider: EnvironmentVariablesProvider(environmentVariables: environment)))
    }

    /// Runs the real gateway on a live socket.
    /// - Parameter eventLoopHeartbeats: false answers heartbeats through the router instead (the same answers, slower).
    func withGateway(
        _ extra: [String: String] = [:], eventLoopHeartbeats: Bool = true, _ test: @Sendable (any TestClientProtocol) async throws -> Void
    ) async throws {
        var logger = Logger(label: "gateway-under-test")
        logger.logLevel = .error
        let app = buildApplication(
            configuration: try configuration(extra), metricsRegistry: IntegrationMetrics.registry, logger: logger,
            eventLoopHeartbeats: eventLoopHeartbeats)
        try await app.test(.live, test)
    }

    func shutdown() async {
        await redis.shutdown()
        await server.stop()
    }
}

extension TestClientProtocol {
    func heartbeat(_ id: DeviceID, token: String?, playlist: String? = "pl-1", body: String? = nil) async throws -> TestResponse {
        var headers: HTTPFields = [.contentType: "application/json"]
        if let token { headers[.authorization] = "Bearer \(token)" }
        let playlistField = playlist.map { #","current_playlist":"\#($0)""# } ?? ""
        let text =
            body
            ?? #"{"device_id":"\#(id)","timestamp":"2026-02-02T10:30:00Z"\#(playlistField),"storage_status":{"total_gb":64,"used_gb":32},"network_status":"connected","player_version":"1.2.3"}"#
        return try await execute(uri: "/api/v1/devices/\(id)/heartbeat", method: .post, headers: headers, body: ByteBuffer(string: text))
    }
}

extension TestResponse {
    var json: [String: Any] {
        get throws {
            guard let object = try JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any] else {
                throw TestFailure("not a JSON object: \(String(buffer: body))")
            }
            return object
        }
    }
}

enum IntegrationMetrics {
    static let registry = MetricsBootstrap.registry
}
