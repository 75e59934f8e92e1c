import HeartbeatDomain
import NIOCore

/// What recording a heartbeat produced.
enum HeartbeatOutcome: Sendable, Equatable {
    /// Recorded at `serverTime`; the device's assigned playlist (if any) and its pending commands (JSON objects).
    case recorded(serverTime: UTCTimestamp, assignedPlaylist: String?, commands: [String])
    case unknownDevice
    /// The device is not in Redis, and Redis has lost the registry (the monitor is re-seeding it):
    /// it may be registered, so the device is told to retry rather than that it is unknown.
    case registryNotLoaded
    case wrongToken
    case tooFrequent(retryAfter: Duration)
}

/// Where heartbeats go: the seam between the HTTP route and Redis.
protocol HeartbeatStore: Sendable {
    /// Checks the token and records the heartbeat atomically, returning what the device should know.
    func record(_ heartbeat: HeartbeatPayload, tokenHash: String) async throws -> HeartbeatOutcome
    /// ``record(_:tokenHash:)`` for a caller on an event loop: `completion` runs once, on `eventLoop`.
    func record(
        _ heartbeat: HeartbeatPayload, tokenHash: String, on eventLoop: any EventLoop,
        completion: @escaping @Sendable (Result<HeartbeatOutcome, any Error>) -> Void)
    /// Throws when the store cannot be reached.
    func checkReachable() async throws
}

extension HeartbeatStore {
    /// Through a task, for stores without a callback path of their own.
    func record(
        _ heartbeat: HeartbeatPayload, tokenHash: String, on eventLoop: any EventLoop,
        completion: @escaping @Sendable (Result<HeartbeatOutcome, any Error>) -> Void
    ) {
        Task {
            let result: Result<HeartbeatOutcome, any Error>
            do { result = .success(try await record(heartbeat, tokenHash: tokenHash)) } catch { result = .failure(error) }
            eventLoop.execute { completion(result) }
        }
    }
}
