import ServerSupport

/// The ops API's errors (same JSON shape as the gateway's).
extension APIError {
    static func invalidBody(_ message: String) -> APIError { APIError(status: .badRequest, code: "invalid_body", message: message) }
    static func invalidQuery(_ message: String) -> APIError { APIError(status: .badRequest, code: "invalid_query", message: message) }
    static let invalidDeviceID = APIError(status: .badRequest, code: "invalid_device_id", message: "the device id in the path must be a UUID")
    static let unavailable = APIError(status: .serviceUnavailable, code: "unavailable", message: "a store is unavailable; retry shortly")
    static let unauthorized = APIError(status: .unauthorized, code: "unauthorized", message: "send 'Authorization: Bearer <ADMIN_TOKEN>'")
}
