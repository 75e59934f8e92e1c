import AsyncHTTPClient
import Foundation
import HeartbeatDomain
import NIOCore

/// What the audit found.
struct AuditResult {
    var silentChecked = 0
    var silentWithOneTimelyOffline = 0
    var liveChecked = 0
    var liveWronglyOffline = 0
    var acceptedHeartbeats = 0
    var historyRows = 0
    var problems: [String] = []

    var passed: Bool { problems.isEmpty }

    var lines: [String] {
        [
            "audit: \(passed ? "PASSED" : "FAILED")",
            "  silent devices with exactly one timely device.offline: \(silentWithOneTimelyOffline)/\(silentChecked)",
            "  live devices wrongly offline: \(liveWronglyOffline)/\(liveChecked)",
            "  accepted heartbeats \(acceptedHeartbeats), history rows for the audited devices' window: \(historyRows)",
        ]
            + problems.prefix(20).map { "  - \($0)" }
    }

    var dictionary: [String: Any] {
        [
            "passed": passed, "silent_checked": silentChecked, "silent_ok": silentWithOneTimelyOffline, "live_checked": liveChecked,
            "live_wrongly_offline": liveWronglyOffline, "accepted": acceptedHeartbeats, "history_rows": historyRows, "problems": problems,
        ]
    }
}

/// Checks through the ops API that silenced devices got exactly one `device.offline` within
/// OFFLINE_AFTER + SCAN_INTERVAL + slack of their last beat, and that live devices got none.
struct Auditor {
    let client: HTTPClient
    let admin: String
    let token: String
    let offlineAfter: Double
    let scanInterval: Double
    let slack: Double
    let sample: Int

    func audit(fleet: [SimulatedDevice], lastBeat: [DeviceID: Date], accepted: Int) async throws -> AuditResult {
        var result = AuditResult(acceptedHeartbeats: accepted)
        let silent = fleet.filter(\.silent)
        let live = fleet.filter { !$0.silent }.prefix(max(0, sample - silent.count))
        for device in silent {
            result.silentChecked += 1
            let offline = try await events(device.id).filter { $0.to == "offline" }
            guard let last = lastBeat[device.id] else {
                result.problems.append("\(device.id): never beat successfully")
                continue
            }
            let limit = offlineAfter + scanInterval + slack
            if offline.count == 1, let at = offline[0].at, at.timeIntervalSince(last) <= limit, at.timeIntervalSince(last) >= offlineAfter - 1 {
                result.silentWithOneTimelyOffline += 1
            } else {
                result.problems.append("\(device.id): \(offline.count) offline events, last beat \(last), events at \(offline.compactMap(\.at))")
            }
        }
        for device in live {
            result.liveChecked += 1
            if try await events(device.id).contains(where: { $0.to == "offline" }) {
                result.liveWronglyOffline += 1
                result.problems.append("\(device.id): declared offline while beating")
            }
        }
        // Every accepted heartbeat must reach heartbeat_history (checked when the whole fleet is
        // audited and no device has more rows than one page shows); the writer gets 30 s to catch up.
        if fleet.count <= sample {
            let deadline = Date().addingTimeInterval(30)
            var truncated = false
            repeat {
                result.historyRows = 0
                for device in fleet {
                    let count = try await historyCount(device.id)
                    truncated = truncated || count >= 1000
                    result.historyRows += count
                }
                if result.historyRows >= accepted || truncated { break }
                try await Task.sleep(for: .seconds(1))
            } while Date() < deadline
            if !truncated, result.historyRows != accepted {
                result.problems.append("history rows \(result.historyRows) != accepted heartbeats \(accepted)")
            }
        }
        return result
    }

    private func get(_ path: String) async throws -> [String: Any] {
        var request = HTTPClientRequest(url: admin + path)
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        let response = try await client.execute(request, timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 4 * 1024 * 1024)
        guard response.status == .ok, let json = try JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any] else {
            throw LoadError("GET \(path): \(response.status)")
        }
        return json
    }

    private func events(_ id: DeviceID) async throws -> [(to: String, at: Date?)] {
        let list = try await get("/api/v1/devices/\(id)/events?limit=1000")["events"] as? [[String: Any]] ?? []
        return list.map { event in
            let at = (event["at"] as? String).flatMap { UTCTimestamp(iso8601: $0) }.map {
                Date(timeIntervalSince1970: Double($0.millisecondsSinceEpoch) / 1000)
            }
            return (event["to"] as? String ?? "", at)
        }
    }

    private func historyCount(_ id: DeviceID) async throws -> Int {
        (try await get("/api/v1/devices/\(id)/heartbeats?limit=1000")["heartbeats"] as? [Any])?.count ?? 0
    }
}
