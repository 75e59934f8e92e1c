import Foundation
import HeartbeatDomain
import Hummingbird
import Logging
import PostgresAdapter
import RedisAdapter
import ServerSupport
import Testing

@testable import Ingest
@testable import Monitor

/// `docs/openapi.yaml` and the routers must describe the same (method, path) pairs.
@Suite struct OpenAPIDocumentTests {
    static var document: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("docs/openapi.yaml")
    }

    /// Paths sit at two spaces under `paths:`, methods at four (the layout the document keeps).
    static func documentedRoutes() throws -> Set<String> {
        let text = try String(contentsOf: document, encoding: .utf8)
        var routes = Set<String>()
        var inPaths = false
        var path: String?
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("paths:") {
                inPaths = true
                continue
            }
            guard inPaths else { continue }
            if !line.hasPrefix(" "), !line.isEmpty, !line.hasPrefix("#") { break }
            if line.hasPrefix("  /"), line.hasSuffix(":") {
                path = String(line.dropFirst(2).dropLast())
            } else if let path, line.hasPrefix("    "), !line.hasPrefix("     ") {
                let key = line.trimmingCharacters(in: .whitespaces).dropLast()
                if ["get", "post", "put", "delete", "patch"].contains(String(key)) { routes.insert("\(key.uppercased()) \(path)") }
            }
        }
        return routes
    }

    static func normalized<Context>(_ router: Router<Context>) -> Set<String> {
        Set(
            router.routes.map { route in
                let path = "\(route.path)".split(separator: "/").map { $0.hasPrefix(":") ? "{\($0.dropFirst())}" : String($0) }.joined(separator: "/")
                return "\(route.method) /\(path.hasPrefix("/") ? String(path.dropFirst()) : path)"
            })
    }

    @Test func everyRouteIsDocumentedAndEveryDocumentedRouteExists() async throws {
        let documented = try Self.documentedRoutes()
        let gateway = Self.normalized(buildRouter(store: InMemoryHeartbeatStore(), metricsRegistry: TestMetrics.registry))
        let redis = RedisClient(configuration: .init(endpoint: RedisEndpoint(port: 1)), logger: Logger(label: "unused"))
        let devices = InMemoryDeviceRepository()
        let leadership = Leadership()
        let stormGuard = SharedStormGuard(StormGuard(settings: .init(minDevices: 1, fraction: 0.5, maxHold: .seconds(1))))
        let monitor = Self.normalized(
            buildAdminRouter(
                health: HealthController(
                    liveness: InMemoryLivenessStore(), devices: devices, requestMetrics: RequestMetricsMiddleware(), leadership: leadership,
                    stormGuard: stormGuard, metricsRegistry: TestMetrics.registry),
                fleet: FleetController(leadership: leadership, stormGuard: stormGuard),
                registry: DeviceRegistry(devices: devices, cache: DeviceRegistryCache(redis: redis, keys: KeySchema(buckets: 1))),
                adminToken: "0123456789abcdef"))
        let served = gateway.union(monitor)
        #expect(!documented.isEmpty)
        #expect(served.subtracting(documented).isEmpty, "served but not documented: \(served.subtracting(documented).sorted())")
        #expect(documented.subtracting(served).isEmpty, "documented but not served: \(documented.subtracting(served).sorted())")
        await redis.shutdown()
    }
}
