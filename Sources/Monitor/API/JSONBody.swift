import Foundation
import HeartbeatDomain
import Hummingbird
import NIOCore
import ServerSupport

/// JSON in and out of the ops API.
enum JSONBody {
    /// Decodes a request body of at most 64 KiB into `T`, mapping every failure to a 400 that says why.
    static func decode<T: Decodable>(_ type: T.Type, from request: Request) async throws -> T {
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: 64 * 1024)
        } catch is NIOTooManyBytesError {
            throw APIError(status: .contentTooLarge, code: "body_too_large", message: "the body must be at most 65536 bytes")
        }
        do {
            return try JSONDecoder().decode(T.self, from: Data(buffer.readableBytesView))
        } catch let DecodingError.keyNotFound(key, _) {
            throw APIError.invalidBody("\(key.stringValue) is required")
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
            let field = context.codingPath.map(\.stringValue).joined(separator: ".")
            throw APIError.invalidBody(field.isEmpty ? "the body must be a JSON object" : "\(field) has the wrong type")
        } catch {
            throw APIError.invalidBody("malformed JSON body")
        }
    }
}
