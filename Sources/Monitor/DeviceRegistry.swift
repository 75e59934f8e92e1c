import HeartbeatDomain

/// The one place a registry change is written: PostgreSQL (the truth) first, then Redis (the
/// gateway's copy). A registration Redis cannot take is undone, so the caller can simply retry;
/// a token or playlist change Redis missed is corrected by retrying too (both writes are idempotent).
struct DeviceRegistry: Sendable {
    let devices: any DeviceRepository
    let cache: any RegistryCache

    /// Registers a device. - Returns: its token (the only time it is visible).
    /// - Throws: ``DeviceRepositoryError/exists``, or the store's error (nothing is left behind).
    func register(id: DeviceID, name: String) async throws -> String {
        let token = DeviceToken.generate()
        let hash = DeviceToken.hash(token)
        try await devices.insert(id: id, name: name, tokenHash: hash)
        do {
            try await cache.write(device: id, tokenHash: hash, playlist: nil)
        } catch {
            // without its Redis entry the device could not beat
            try? await devices.delete(id)
            throw error
        }
        return token
    }

    /// Gives the device a new token. - Returns: the token, or `nil` when the device is unknown.
    func rotateToken(of id: DeviceID) async throws -> String? {
        let token = DeviceToken.generate()
        let hash = DeviceToken.hash(token)
        guard let device = try await devices.replaceToken(of: id, hash: hash) else { return nil }
        try await cache.write(device: id, tokenHash: hash, playlist: device.playlist)
        return token
    }

    /// Assigns a playlist. - Returns: false when the device is unknown.
    func assignPlaylist(_ playlist: String, to id: DeviceID) async throws -> Bool {
        guard try await devices.assignPlaylist(playlist, to: id) else { return false }
        try await cache.assignPlaylist(playlist, to: id)
        return true
    }
}
