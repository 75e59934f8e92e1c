import Crypto
import Hummingbird
import ServerSupport

/// Requires `Authorization: Bearer <ADMIN_TOKEN>` (compared as SHA-256 digests, in constant time).
struct AdminAuthMiddleware<Context: RequestContext>: RouterMiddleware {
    private let expected: SHA256.Digest

    init(token: String) {
        expected = SHA256.hash(data: Array(token.utf8))
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let header = request.headers[.authorization], header.lowercased().hasPrefix("bearer ") else {
            throw APIError.unauthorized
        }
        let presented = SHA256.hash(data: Array(header.dropFirst(7).utf8))
        guard presented == expected else { throw APIError.unauthorized }  // Digest == is constant-time
        return try await next(request, context)
    }
}
