import HTTPTypes
import Hummingbird
import Shared

/// An ops API error: `{"error":"code","message":"…"}` with its status.
struct AdminError: HTTPResponseError {
    var status: HTTPResponse.Status
    var code: String
    var message: String

    var headers: HTTPFields { [.contentType: "application/json"] }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        var json = JSONText.Object()
        json.add("error", string: code)
        json.add("message", string: message)
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: json.text)))
    }

    static let unauthorized = AdminError(status: .unauthorized, code: "unauthorized", message: "send 'Authorization: Bearer <ADMIN_TOKEN>'")
}
