import Foundation
import HTTPTypes
import HeartbeatDomain
import Hummingbird
import Logging
import NIOCore
import ServerSupport

/// `POST /api/v1/devices/{id}/heartbeat`: validates the request, records it with one store call,
/// and answers with the server time, the playlist flag and pending commands.
struct HeartbeatController<Context: RequestContext> {
    let store: any HeartbeatStore
    let maxBodyBytes: Int
    let metrics: IngestMetrics

    /// The route, as `http_requests_total` labels it.
    static var route: String { "/api/v1/devices/{id}/heartbeat" }

    func addRoutes(to router: Router<Context>) {
        router.post(RouterPath(Self.route), use: heartbeat)
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
        let (pathID, token) = try checkHead(
            contentLength: request.headers[.contentLength], rawID: context.parameters.get("id").map { Substring($0) },
            authorization: request.headers[.authorization])
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: maxBodyBytes)
        } catch is NIOTooManyBytesError {
            throw APIError.bodyTooLarge(limit: maxBodyBytes)
        }
        let heartbeat = try decode(body, pathID: pathID)
        let outcome: HeartbeatOutcome
        do {
            outcome = try await store.record(heartbeat, tokenHash: DeviceToken.hash(token))
        } catch {
            throw storeFailed(error, device: pathID, logger: context.logger)
        }
        return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: try Self.reply(to: outcome, of: heartbeat)))
    }

    // MARK: The steps both paths share (this route and ``HeartbeatChannelHandler``), in the order errors are reported.

    /// What the request head alone decides: a body announced too large (refused before a byte of it
    /// is read), the device id in the path, the bearer token.
    func checkHead(contentLength: String?, rawID: Substring?, authorization: String?) throws(APIError) -> (DeviceID, token: String) {
        if let length = contentLength.flatMap(Int.init), length > maxBodyBytes {
            throw APIError.bodyTooLarge(limit: maxBodyBytes)
        }
        guard let rawID, let pathID = DeviceID(rawID) else {
            throw APIError.invalid("invalid_device_id", "the device id in the path must be a UUID")
        }
        guard let token = Self.bearerToken(authorization) else { throw APIError.missingToken }
        return (pathID, token)
    }

    /// The body, validated, for the device in the path.
    func decode(_ body: ByteBuffer, pathID: DeviceID) throws(APIError) -> HeartbeatPayload {
        let heartbeat: HeartbeatPayload
        do {
            heartbeat = try body.withUnsafeReadableBytes { bytes throws(PayloadValidationError) in try HeartbeatPayload.decode(utf8: bytes) }
        } catch {
            throw APIError.invalidBody(error)
        }
        guard heartbeat.deviceID == pathID else {
            throw APIError.invalid("device_id_mismatch", "device_id in the body must equal the id in the path")
        }
        return heartbeat
    }

    /// A store failure, counted and logged, as the `503` it is answered with.
    func storeFailed(_ error: any Error, device: DeviceID, logger: Logger) -> APIError {
        metrics.storeErrors.increment()
        logger.warning("heartbeat not recorded", metadata: ["device": "\(device)", "error": "\(error)"])
        return APIError.storeUnavailable
    }

    /// The `200` body for a recorded heartbeat; the error for any other outcome.
    static func reply(to outcome: HeartbeatOutcome, of heartbeat: HeartbeatPayload) throws(APIError) -> ByteBuffer {
        switch outcome {
        case .unknownDevice: throw APIError.unknownDevice
        case .registryNotLoaded: throw APIError.registryNotLoaded
        case .wrongToken: throw APIError.wrongToken
        case .tooFrequent(let retryAfter): throw APIError.tooFrequent(retryAfter: retryAfter)
        case .recorded(let serverTime, let assignedPlaylist, let commands):
            let playlistUpdated = assignedPlaylist != nil && assignedPlaylist != heartbeat.currentPlaylist
            return reply(serverTime: serverTime, playlistUpdated: playlistUpdated, commands: commands)
        }
    }

    /// `{"status":"ok","server_time":…,"playlist_updated":…,"commands":[…]}`, written straight into
    /// the response buffer (commands are JSON texts validated when they were queued).
    static func reply(serverTime: UTCTimestamp, playlistUpdated: Bool, commands: [String]) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(96 + commands.reduce(0) { $0 + $1.utf8.count + 1 })
        buffer.writeStaticString(#"{"status":"ok","server_time":""#)
        buffer.writeString(serverTime.iso8601)
        buffer.writeStaticString(playlistUpdated ? #"","playlist_updated":true,"commands":["# : #"","playlist_updated":false,"commands":["#)
        for (index, command) in commands.enumerated() {
            if index > 0 { buffer.writeStaticString(",") }
            buffer.writeString(command)
        }
        buffer.writeStaticString("]}")
        return buffer
    }

    /// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive); `nil` when absent or empty.
    static func bearerToken(_ header: String?) -> String? {
        guard let header else { return nil }
        let bytes = header.utf8
        guard bytes.count > 7 else { return nil }
        // "bearer " compared case-insensitively on bytes (this runs for every heartbeat)
        for (byte, expected) in zip(bytes.prefix(7), "bearer ".utf8) where byte | 0x20 != expected {
            return nil
        }
        let token = bytes.dropFirst(7).drop { $0 == UInt8(ascii: " ") }
        var end = token.endIndex
        while end > token.startIndex, bytes[bytes.index(before: end)] == UInt8(ascii: " ") { end = bytes.index(before: end) }
        let trimmed = token[token.startIndex..<end]
        return trimmed.isEmpty || trimmed.count > 512 ? nil : String(decoding: trimmed, as: UTF8.self)
    }
}
