import HTTPTypes
import HeartbeatDomain
import Hummingbird
import NIOCore
import ServerSupport

/// A heartbeat's response as the event-loop paths (``HeartbeatWireHandler``,
/// ``HeartbeatChannelHandler``) write it: the route's status, headers and body, and the outcome
/// label it is counted under.
struct HeartbeatAnswer {
    let status: HTTPResponse.Status
    let headers: HTTPFields
    let body: ByteBuffer
    /// `heartbeat_outcomes_total`'s label.
    let outcome: String

    init(_ error: APIError) {
        self.init(status: error.status, headers: error.headers, body: ByteBuffer(string: error.body), outcome: error.code)
    }

    private init(status: HTTPResponse.Status, headers: HTTPFields, body: ByteBuffer, outcome: String) {
        self.status = status
        self.headers = headers
        self.body = body
        self.outcome = outcome
    }

    /// The answer to the store's result for `heartbeat`, as ``HeartbeatController`` answers it.
    init(_ result: Result<HeartbeatOutcome, any Error>, of heartbeat: HeartbeatPayload, route: HeartbeatChannelHandler.Route) {
        do throws(APIError) {
            let outcome: HeartbeatOutcome
            switch result {
            case .success(let value): outcome = value
            case .failure(let error): throw route.controller.storeFailed(error, device: heartbeat.deviceID, logger: route.logger)
            }
            let body = try HeartbeatController<BasicRequestContext>.reply(to: outcome, of: heartbeat)
            self.init(status: .ok, headers: Self.okHeaders, body: body, outcome: "ok")
        } catch {
            self.init(error)
        }
    }

    /// The header fields as Hummingbird writes them: the route's own, then `Content-Length`, `Date`
    /// and `Server`.
    func fields(serverName: String) -> HTTPFields {
        var fields = headers
        fields[.contentLength] = String(body.readableBytes)
        fields[.date] = HTTPDate.now
        fields[.server] = serverName
        return fields
    }

    /// The whole response in HTTP/1.1 wire form, byte for byte what NIO's `HTTPResponseEncoder`
    /// writes for ``fields(serverName:)`` and the body (without building those fields: ~1.8% of the
    /// gateway's samples went to them).
    func http1(serverName: String) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(192 + body.readableBytes)
        if status == .ok {
            buffer.writeStaticString("HTTP/1.1 200 OK\r\n")  // nearly every answer
        } else {
            buffer.writeStaticString("HTTP/1.1 ")
            buffer.writeString(String(status.code))
            buffer.writeStaticString(" ")
            buffer.writeString(status.reasonPhrase)
            buffer.writeStaticString("\r\n")
        }
        for field in headers { Self.write(field.name, field.value, to: &buffer) }
        Self.write(.contentLength, String(body.readableBytes), to: &buffer)
        Self.write(.date, HTTPDate.now, to: &buffer)
        Self.write(.server, serverName, to: &buffer)
        buffer.writeStaticString("\r\n")
        buffer.writeImmutableBuffer(body)
        return buffer
    }

    private static func write(_ name: HTTPField.Name, _ value: String, to buffer: inout ByteBuffer) {
        buffer.writeString(name.rawName)
        buffer.writeStaticString(": ")
        buffer.writeString(value)
        buffer.writeStaticString("\r\n")
    }

    /// The headers of a recorded heartbeat's `200`.
    private static let okHeaders: HTTPFields = [.contentType: "application/json"]

    /// Counts the answer: its outcome, the handler's duration since `started`, the request metrics.
    func count(since started: ContinuousClock.Instant, route: HeartbeatChannelHandler.Route) {
        route.controller.metrics.outcome(outcome)
        route.controller.metrics.heartbeatDuration.recordInterval(since: started)
        route.requestMetrics.finished(status == .ok ? route.okCounter : route.counter(status: status))
    }
}
