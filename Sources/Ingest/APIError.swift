import HTTPTypes
import HeartbeatDomain
import Hummingbird
import ServerSupport

/// The gateway's errors.
extension APIError {
    static func invalid(_ code: String, _ message: String) -> APIError {
        APIError(status: .badRequest, code: code, message: message)
    }

    static func invalidBody(_ error: PayloadValidationError) -> APIError {
        APIError(status: .badRequest, code: "invalid_body", message: error.description)
    }

    static let missingToken = APIError(
        status: .unauthorized, code: "missing_token",
        message: "send the device token as 'Authorization: Bearer <token>'")
    static let wrongToken = APIError(status: .unauthorized, code: "invalid_token", message: "the token is not valid for this device")

    static func bodyTooLarge(limit: Int) -> APIError {
        APIError(status: .contentTooLarge, code: "body_too_large", message: "the body must be at most \(limit) bytes")
    }

    static func tooFrequent(retryAfter: Duration) -> APIError {
        let seconds = max(1, Int(retryAfter.seconds.rounded(.up)))
        return APIError(
            status: .tooManyRequests, code: "too_frequent",
            message: "heartbeats are accepted at most once per interval; retry after \(seconds) s", retryAfterSeconds: seconds)
    }

    /// `503`: Redis cannot be reached. `Retry-After` is 1 to 5 s at random, so a fleet that lost its
    /// gateway together does not come back in lockstep.
    static var storeUnavailable: APIError {
        APIError(
            status: .serviceUnavailable, code: "unavailable",
            message: "heartbeat storage is unavailable; retry shortly", retryAfterSeconds: jitteredRetryAfter())
    }

    /// `503`: Redis lost its data and the registry is being re-seeded from PostgreSQL; the device is
    /// probably registered and must retry (not take this as deregistration).
    static var registryNotLoaded: APIError {
        APIError(
            status: .serviceUnavailable, code: "registry_loading",
            message: "the device registry is being reloaded; retry shortly", retryAfterSeconds: jitteredRetryAfter())
    }

    /// 1 to 5 seconds, uniformly.
    static func jitteredRetryAfter() -> Int { Int.random(in: 1...5) }
}
