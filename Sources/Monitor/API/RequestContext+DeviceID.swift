import HeartbeatDomain
import Hummingbird
import ServerSupport

extension RequestContext {
    /// The `{id}` path parameter as a device id. - Throws: `400 invalid_device_id`.
    func deviceID() throws -> DeviceID {
        guard let raw = parameters.get("id"), let id = DeviceID(raw) else { throw APIError.invalidDeviceID }
        return id
    }
}

extension APIError {
    /// Runs a store call, turning any store failure into `503 unavailable` (API errors pass through).
    static func storeCall<T>(_ body: () async throws -> T) async throws -> T {
        do { return try await body() } catch let error as APIError { throw error } catch {
            throw APIError.unavailable
        }
    }
}
