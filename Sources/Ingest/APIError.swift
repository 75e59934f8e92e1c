import HTTPTypes
import Hummingbird
import Shared

/// The gateway's errors.
extension APIError {
    static func invalid(_ code: String, _ message: String) -> APIError {
        APIError(status: .badRequest, code: code, message: message)
    }

    static func invalidBody(_ error: PayloadValidationError) -> APIError {
        APIError(status: .badRequest, code: "invalid_body", message: error.description)
    }

    static let missingToken = APIError(status: .unauthorized, code: "missing_token",
                                       message: "send the device token as 'Authorization: Bearer <token>'")
    static let wrongToken = APIError(status: .unauthorized, code: "invalid_token", message: "the token is not valid for this device")

    static func bodyTooLarge(limit: Int) -> APIError {
        APIError(status: .contentTooLarge, code: "body_too_large", message: "the body must be at most \(limit) bytes")
    }

    static func tooFrequent(retryAfter: Duration) -> APIError {
        let seconds = max(1, Int((Double(retryAfter.components.seconds) + Double(retryAfter.components.attoseconds) / 1e18).rounded(.up)))
        return APIError(status: .tooManyRequests, code: "too_frequent",
                        message: "heartbeats are accepted at most once per interval; retry after \(seconds) s", retryAfterSeconds: seconds)
    }

    static let storeUnavailable = APIError(status: .serviceUnavailable, code: "unavailable",
                                           message: "heartbeat storage is unavailable; retry shortly", retryAfterSeconds: 1)
}
