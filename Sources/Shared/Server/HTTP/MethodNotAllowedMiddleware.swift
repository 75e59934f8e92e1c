import HTTPTypes
import Hummingbird

/// Answers a request whose path is served but not with its method with `405 Method Not Allowed`
/// and an `Allow` header (Hummingbird answers `404` for both an unknown path and an unknown
/// method). Add it to the router after every route: router middleware added last wraps only the
/// not-found responder, so matched requests never pass through it.
public struct MethodNotAllowedMiddleware<Context: RequestContext>: RouterMiddleware {
    /// Path templates split into segments (`:name` matches any one segment) with their methods.
    private let routes: [(segments: [Substring], methods: Set<String>)]

    /// Takes the routes the router serves at this point.
    public init(routes: some Sequence<(path: String, method: HTTPRequest.Method)>) {
        var table: [String: Set<String>] = [:]
        for route in routes { table[route.path, default: []].insert(route.method.rawValue) }
        self.routes = table.map { (path, methods) in (path.split(separator: "/"), methods) }
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let segments = request.uri.path.split(separator: "/")
        var allowed = Set<String>()
        for route in routes where Self.matches(route.segments, segments) { allowed.formUnion(route.methods) }
        guard !allowed.isEmpty, !allowed.contains(request.method.rawValue) else { return try await next(request, context) }
        if allowed.contains("GET") { allowed.insert("HEAD") }
        throw APIError(
            status: .methodNotAllowed, code: "method_not_allowed",
            message: "\(request.method.rawValue) is not served on this path; it serves \(allowed.sorted().joined(separator: ", "))",
            allow: allowed.sorted())
    }

    private static func matches(_ template: [Substring], _ path: [Substring]) -> Bool {
        template.count == path.count && zip(template, path).allSatisfy { $0.hasPrefix(":") || $0.hasPrefix("{") || $0 == $1 }
    }
}

extension Router {
    /// Adds ``MethodNotAllowedMiddleware`` for every route added so far (call it last).
    public func addMethodNotAllowed() {
        add(middleware: MethodNotAllowedMiddleware(routes: routes.map { ("\($0.path)", $0.method) }))
    }
}
