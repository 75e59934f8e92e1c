import HTTPTypes
import HeartbeatDomain
import Hummingbird
import NIOCore

/// An error answered to a client (gateway or ops API) as `{"error":"code","message":"…"}` with the right status.
public struct APIError: HTTPResponseError, Equatable, Sendable {
    public var status: HTTPResponse.Status
    public var code: String
    public var message: String
    /// Seconds for a `Retry-After` header.
    public var retryAfterSeconds: Int?
    /// Methods for an `Allow` header (with `405`).
    public var allow: [String]?

    public init(status: HTTPResponse.Status, code: String, message: String, retryAfterSeconds: Int? = nil, allow: [String]? = nil) {
        self.status = status
        self.code = code
        self.message = message
        self.retryAfterSeconds = retryAfterSeconds
        self.allow = allow
    }

    public var headers: HTTPFields {
        var fields: HTTPFields = [.contentType: "application/json"]
        if let retryAfterSeconds { fields[.retryAfter] = String(retryAfterSeconds) }
        if let allow { fields[.allow] = allow.joined(separator: ", ") }
        return fields
    }

    /// The JSON error body.
    public var body: String {
        var json = JSONText.Object()
        json.add("error", string: code)
        json.add("message", string: message)
        return json.text
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: body)))
    }

    /// No device is registered with the id in the path (both APIs).
    public static let unknownDevice = APIError(status: .notFound, code: "unknown_device", message: "no device is registered with this id")
}
