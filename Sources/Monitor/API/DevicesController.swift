import Foundation
import HeartbeatDomain
import Hummingbird
import ServerSupport

/// The ops API's registry writes: register, rotate a token, assign a playlist, queue a command.
/// Each goes through ``DeviceRegistry`` (PostgreSQL, then Redis) or the command queue in Redis.
struct DevicesController<Context: RequestContext> {
    let registry: DeviceRegistry
    /// Largest queue of pending commands per device.
    let commandQueueLimit = 100

    func addRoutes(to api: RouterGroup<Context>) {
        api.post("/devices", use: register)
        api.put("/devices/{id}/playlist", use: assignPlaylist)
        api.post("/devices/{id}/commands", use: enqueueCommand)
        api.post("/devices/{id}/token", use: rotateToken)
    }

    struct Registration: Decodable {
        var id: String?
        var name: String?
    }

    @Sendable func register(request: Request, context: Context) async throws -> EditedResponse<DeviceTokenResponse> {
        let body = try await JSONBody.decode(Registration.self, from: request)
        let id =
            try body.id.map { raw in
                guard let parsed = DeviceID(raw) else { throw APIError.invalidBody("id must be a UUID") }
                return parsed
            } ?? .random()
        guard let name = body.name?.trimmingCharacters(in: .whitespaces), !name.isEmpty, name.count <= 200 else {
            throw APIError.invalidBody("name is required: 1 to 200 characters")
        }
        // PostgreSQL text cannot hold NUL (libpq would cut the name there); no control characters at all
        guard !name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw APIError.invalidBody("name must not contain control characters")
        }
        do {
            let token = try await registry.register(id: id, name: name)
            return EditedResponse(status: .created, response: DeviceTokenResponse(id: id.string, token: token))
        } catch DeviceRepositoryError.exists {
            throw APIError(status: .conflict, code: "device_exists", message: "a device with this id is already registered")
        } catch {
            context.logger.error("registration failed", metadata: ["error": "\(error)"])
            throw APIError.unavailable
        }
    }

    @Sendable func rotateToken(request: Request, context: Context) async throws -> DeviceTokenResponse {
        let id = try context.deviceID()
        guard let token = try await APIError.storeCall({ try await registry.rotateToken(of: id) }) else { throw APIError.unknownDevice }
        return DeviceTokenResponse(id: id.string, token: token)
    }

    struct PlaylistAssignment: Decodable {
        var playlist_id: String
    }

    @Sendable func assignPlaylist(request: Request, context: Context) async throws -> PlaylistResponse {
        let id = try context.deviceID()
        let body = try await JSONBody.decode(PlaylistAssignment.self, from: request)
        guard let playlist = DeviceID(body.playlist_id) else { throw APIError.invalidBody("playlist_id must be a UUID") }
        guard try await APIError.storeCall({ try await registry.assignPlaylist(playlist.string, to: id) }) else { throw APIError.unknownDevice }
        return PlaylistResponse(id: id.string, playlist_id: playlist.string)
    }

    struct CommandRequest: Decodable {
        var type: String
        var payload: JSONValue?
        var ttl_seconds: Int?
    }

    @Sendable func enqueueCommand(request: Request, context: Context) async throws -> EditedResponse<QueuedCommandResponse> {
        let id = try context.deviceID()
        let body = try await JSONBody.decode(CommandRequest.self, from: request)
        guard !body.type.isEmpty, body.type.count <= 64 else { throw APIError.invalidBody("type must be 1 to 64 characters") }
        let ttl = body.ttl_seconds ?? 3600
        guard (1...604_800).contains(ttl) else { throw APIError.invalidBody("ttl_seconds must be from 1 to 604800") }
        let payload = body.payload ?? .object([:])
        guard case .object = payload else { throw APIError.invalidBody("payload must be a JSON object") }
        guard try await APIError.storeCall({ try await registry.devices.exists(id) }) else { throw APIError.unknownDevice }
        let commandID = UUID().uuidString.lowercased()
        let expiresAt = UTCTimestamp(millisecondsSinceEpoch: UTCTimestamp.nowMs + Int64(ttl) * 1000)
        var json = JSONText.Object()
        json.add("id", string: commandID)
        json.add("type", string: body.type)
        json.add("payload", raw: payload.jsonText)
        json.add("expires_at", string: expiresAt.iso8601)
        let queued = try await APIError.storeCall {
            try await registry.cache.enqueueCommand(
                id: commandID, type: body.type, json: json.text, expiresAt: expiresAt, for: id, limit: commandQueueLimit)
        }
        guard queued else {
            throw APIError(
                status: .conflict, code: "command_queue_full",
                message: "the device already has \(commandQueueLimit) commands waiting for its next heartbeat")
        }
        return EditedResponse(status: .accepted, response: QueuedCommandResponse(id: commandID, expires_at: expiresAt.iso8601))
    }
}
