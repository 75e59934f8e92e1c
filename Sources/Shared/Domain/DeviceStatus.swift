/// A device's liveness as the system knows it.
public enum DeviceStatus: String, Sendable, Codable, CaseIterable {
    case online
    case offline
    /// Registered but never heard from.
    case unknown
}
