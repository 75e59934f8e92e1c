import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Shared

/// `POST /api/v1/devices/{id}/heartbeat`: validates the request, records it with one store call,
/// and answers with the server time, the playlist flag and pending commands.
struct HeartbeatController<Context: RequestContext> {
    let store: any HeartbeatStore
    let maxBodyBytes: Int
    let metrics: IngestMetrics

    func addRoutes(to router: Router<Context>) {
        router.post("/api/v1/devices/{id}/heartbeat", use: heartbeat)
    }

    @Sendable func heartbeat(request: Request, context: Context) async throws -> Response {
        let started = ContinuousClock.now
        defer { metrics.heartbeatDuration.recordInterval(since: started) }
        do {
            let response = try await handle(request: request, context: context)
            metrics.outcome("ok")
            return response
        } catch let error as APIError {
            metrics.outcome(error.code)
            throw error
        }
    }

    private func handle(request: Request, context: Context) async throws -> Response {
        // Cheap checks first: a body announced too large is refused before a byte of it is read.
        if let length = request.headers[.contentLength].flatMap(Int.init), length > maxBodyBytes {
            throw APIError.bodyTooLarge(limit: maxBodyBytes)
        }
        guard let rawID = context.parameters.get("id"), let pathID = DeviceID(rawID) else {
            throw APIError.invalid("invalid_device_id", "the device id in the path must be a UUID")
        }
        guard let token = Self.bearerToken(request.headers[.authorization]) else {
            throw APIError.missingToken
        }
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: maxBodyBytes)
        } catch is NIOTooManyBytesError {
            throw APIError.bodyTooLarge(limit: maxBodyBytes)
        }
        let heartbeat: HeartbeatPayload
        do {
            heartbeat = try HeartbeatPayload.decode(json: Data(body.readableBytesView))
        } catch {
            throw APIError.invalidBody(error)
        }
        guard heartbeat.deviceID == pathID else {
            throw APIError.invalid("device_id_mismatch", "device_id in the body must equal the id in the path")
        }

        let outcome: HeartbeatOutcome
        do {
            outcome = try await store.record(heartbeat, tokenHash: DeviceToken.hash(token))
        } catch {
            metrics.storeErrors.increment()
            context.logger.warning("heartbeat not recorded", metadata: ["device": "\(pathID)", "error": "\(error)"])
            throw APIError.storeUnavailable
        }
        switch outcome {
        case .unknownDevice: throw APIError.unknownDevice
        case .wrongToken: throw APIError.wrongToken
        case .tooFrequent(let retryAfter): throw APIError.tooFrequent(retryAfter: retryAfter)
        case .recorded(let serverTime, let assignedPlaylist, let commands):
            let playlistUpdated = assignedPlaylist != nil && assignedPlaylist != heartbeat.currentPlaylist
            var json = JSONText.Object()
            json.add("status", string: "ok")
            json.add("server_time", string: serverTime.iso8601)
            json.add("playlist_updated", bool: playlistUpdated)
            json.add("commands", raw: "[" + commands.joined(separator: ",") + "]")
            return Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(string: json.text)))
        }
    }

    /// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive); `nil` when absent or empty.
    static func bearerToken(_ header: String?) -> String? {
        guard let header, header.count > 7, header.prefix(7).lowercased() == "bearer " else { return nil }
        let token = header.dropFirst(7).trimmingCharacters(in: .whitespaces)
        return token.isEmpty || token.count > 512 ? nil : token
    }
}
