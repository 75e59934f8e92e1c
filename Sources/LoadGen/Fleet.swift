import AsyncHTTPClient
import Foundation
import HeartbeatDomain
import NIOCore
import NIOHTTP1

/// A simulated device: its identity and, once it went silent, when.
struct SimulatedDevice: Sendable {
    var id: DeviceID
    var token: String
    var silent: Bool
}

/// Registers devices through the ops API, or reads them from a file of `<id>\t<token>` lines.
enum Fleet {
    static func register(count: Int, admin: String, token: String, client: HTTPClient) async throws -> [(DeviceID, String)] {
        var devices: [(DeviceID, String)] = []
        devices.reserveCapacity(count)
        for index in 0..<count {
            var request = HTTPClientRequest(url: admin + "/api/v1/devices")
            request.method = .POST
            request.headers.add(name: "Authorization", value: "Bearer \(token)")
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: #"{"name":"loadgen-\#(index)"}"#))
            let response = try await client.execute(request, timeout: .seconds(10))
            let body = try await response.body.collect(upTo: 4096)
            guard response.status == .created,
                let json = try JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any],
                let id = (json["id"] as? String).flatMap({ DeviceID($0) }), let token = json["token"] as? String
            else { throw LoadError("registration \(index) failed: \(response.status) \(String(buffer: body))") }
            devices.append((id, token))
            if (index + 1) % 1000 == 0 { print("registered \(index + 1)/\(count)") }
        }
        return devices
    }

    static func read(file: String) throws -> [(DeviceID, String)] {
        try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n").map { line in
            let parts = line.split(separator: "\t")
            guard parts.count == 2, let id = DeviceID(parts[0]) else { throw LoadError("bad line in \(file): \(line)") }
            return (id, String(parts[1]))
        }
    }

    static func write(_ devices: [(DeviceID, String)], to file: String) throws {
        try devices.map { "\($0.0)\t\($0.1)" }.joined(separator: "\n").appending("\n").write(toFile: file, atomically: true, encoding: .utf8)
    }
}

struct LoadError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
