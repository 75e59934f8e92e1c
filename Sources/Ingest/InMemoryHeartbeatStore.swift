import Foundation
import HeartbeatDomain
import Synchronization

/// A ``HeartbeatStore`` in memory with the same rules as the Redis script, for tests and local experiments.
final class InMemoryHeartbeatStore: HeartbeatStore {
    struct Device {
        var tokenHash: String
        var playlist: String?
        /// Pending commands: sent with every reply until acknowledged (by `id`) or expired.
        var commands: [(id: String, expiresAt: UTCTimestamp, json: String)] = []
        var lastHeartbeat: UTCTimestamp?
        var latest: HeartbeatPayload?
    }

    private let devices = Mutex<[DeviceID: Device]>([:])
    private let minimumInterval: Duration
    /// Set to make every call fail, as Redis being down would.
    let failure = Mutex<(any Error & Sendable)?>(nil)

    init(minimumInterval: Duration = .zero) {
        self.minimumInterval = minimumInterval
    }

    func register(_ id: DeviceID, tokenHash: String, playlist: String? = nil) {
        devices.withLock { $0[id] = Device(tokenHash: tokenHash, playlist: playlist) }
    }

    func enqueue(command id: String, json: String, expiresAt: UTCTimestamp, for device: DeviceID) {
        devices.withLock { $0[device]?.commands.append((id, expiresAt, json)) }
    }

    func device(_ id: DeviceID) -> Device? {
        devices.withLock { $0[id] }
    }

    func record(_ heartbeat: HeartbeatPayload, tokenHash: String) async throws -> HeartbeatOutcome {
        if let error = failure.withLock({ $0 }) { throw error }
        let now = UTCTimestamp(millisecondsSinceEpoch: Int64((Date().timeIntervalSince1970 * 1000).rounded()))
        let minimumMs = Int64(minimumInterval / .milliseconds(1))
        return devices.withLock { devices in
            guard var device = devices[heartbeat.deviceID] else { return .unknownDevice }
            guard device.tokenHash == tokenHash else { return .wrongToken }
            if let last = device.lastHeartbeat, minimumMs > 0, now.millisecondsSinceEpoch - last.millisecondsSinceEpoch < minimumMs {
                return .tooFrequent(retryAfter: .milliseconds(minimumMs - (now.millisecondsSinceEpoch - last.millisecondsSinceEpoch)))
            }
            device.lastHeartbeat = now
            device.latest = heartbeat
            let acked = Set(heartbeat.ackedCommands)
            device.commands.removeAll { $0.expiresAt <= now || acked.contains($0.id) }
            let commands = device.commands.map(\.json)
            devices[heartbeat.deviceID] = device
            return .recorded(serverTime: now, assignedPlaylist: device.playlist, commands: commands)
        }
    }

    func checkReachable() async throws {
        if let error = failure.withLock({ $0 }) { throw error }
    }
}
