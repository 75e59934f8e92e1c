import ArgumentParser
import AsyncHTTPClient
import Foundation
import HeartbeatDomain
import NIOCore
import Synchronization

/// `heartbeat-loadgen`: simulates a fleet of players against one or more gateways, prints
/// progress every second, then throughput, latency percentiles and a correctness audit.
@main
struct LoadGen: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "heartbeat-loadgen",
        abstract: "Simulate a fleet of signage players against the heartbeat gateway.",
        // one line per paragraph: the argument parser wraps it to the terminal (hard breaks did not)
        discussion: [
            "Each device beats every --interval seconds (±10% jitter), or, with --rate, the whole fleet sends that many heartbeats "
                + "per second over --connections (--rate 0: as fast as possible).",
            "With --silent-fraction, that share of devices stops at mid-run; make the run long enough (mid-run + OFFLINE_AFTER + "
                + "SCAN_INTERVAL + slack) for the audit to see them go offline.",
        ].joined(separator: "\n\n"))

    @Option(help: "Gateway base URL (repeat for several).") var gateway: [String] = ["http://127.0.0.1:8080"]
    @Option(help: "Ops API base URL (registration and audit).") var admin = "http://127.0.0.1:8081"
    @Option(help: "Ops API token (default: $ADMIN_TOKEN).") var adminToken: String?
    @Option(help: "Devices to register through the ops API.") var devices = 100
    @Option(help: "Read devices from this file of '<id>\\t<token>' lines instead of registering.") var devicesFile: String?
    @Option(help: "Write the registered devices to this file.") var saveDevices: String?
    @Option(help: "Seconds between a device's heartbeats.") var interval: Double = 60
    @Option(help: "Total heartbeats per second instead of --interval (0 = as fast as possible).") var rate: Double?
    @Option(help: "Concurrent requests in --rate mode.") var connections = 64
    @Option(help: "Run length in seconds.") var duration: Double = 60
    @Option(help: "Share of devices that stop at mid-run.") var silentFraction: Double = 0
    @Option(help: "The monitor's OFFLINE_AFTER_SECONDS, for the audit.") var offlineAfter: Double = 600
    @Option(help: "The monitor's SCAN_INTERVAL_SECONDS, for the audit.") var scanInterval: Double = 60
    @Option(help: "Slack allowed on offline detection, seconds.") var slack: Double = 5
    @Option(help: "Most devices the audit checks (all silent ones, then live ones up to this).") var auditSample = 1000
    @Flag(help: "Skip the audit.") var noAudit = false
    @Option(help: "Also write the report as JSON to this file.") var json: String?

    func validate() throws {
        guard (0...1).contains(silentFraction) else { throw ValidationError("--silent-fraction must be from 0 to 1") }
        guard duration > 0, interval > 0, connections > 0 else { throw ValidationError("--duration, --interval and --connections must be positive") }
        if let rate, rate < 0 { throw ValidationError("--rate must not be negative") }
    }

    func run() async throws {
        let client = HTTPClient(
            eventLoopGroupProvider: .singleton,
            configuration: .init(
                connectionPool: .init(idleTimeout: .seconds(30), concurrentHTTP1ConnectionsPerHostSoftLimit: max(connections, 8))))
        do {
            try await execute(client)
        } catch {
            try? await client.shutdown()
            throw error
        }
        try await client.shutdown()
    }

    private func execute(_ client: HTTPClient) async throws {
        let token = adminToken ?? ProcessInfo.processInfo.environment["ADMIN_TOKEN"]
        let pairs: [(DeviceID, String)]
        if let devicesFile {
            pairs = try Fleet.read(file: devicesFile)
        } else {
            guard let token else { throw ValidationError("registering devices needs --admin-token or ADMIN_TOKEN") }
            pairs = try await Fleet.register(count: devices, admin: admin, token: token, client: client)
        }
        if let saveDevices { try Fleet.write(pairs, to: saveDevices) }
        let silentCount = Int((Double(pairs.count) * silentFraction).rounded())
        let fleet = pairs.enumerated().map { SimulatedDevice(id: $0.element.0, token: $0.element.1, silent: $0.offset < silentCount) }
        print("simulating \(fleet.count) devices (\(silentCount) go silent at \(Int(duration / 2)) s) against \(gateway.joined(separator: ", "))")

        let stats = LoadStats()
        let start = ContinuousClock.now
        let end = start + .milliseconds(Int64(duration * 1000))
        let silenceAt = start + .milliseconds(Int64(duration * 500))
        let lastBeat = BeatLog()
        let beater = Beater(client: client, gateways: gateway, stats: stats, lastBeat: lastBeat)

        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await Self.progress(stats: stats, start: start, end: end) }
            if let rate {
                let perWorker = rate > 0 ? rate / Double(connections) : 0
                let cursor = RoundRobin()
                for _ in 0..<connections {
                    group.addTask {
                        while ContinuousClock.now < end {
                            let tick = ContinuousClock.now
                            let index = cursor.next() % fleet.count
                            let device = fleet[index]
                            if device.silent && ContinuousClock.now >= silenceAt { continue }
                            await beater.beat(device)
                            if perWorker > 0 { try? await Task.sleep(until: tick + .milliseconds(Int64(1000 / perWorker))) }
                        }
                    }
                }
            } else {
                for device in fleet {
                    let period = interval
                    group.addTask {
                        try? await Task.sleep(for: .milliseconds(Int64(Double.random(in: 0..<period) * 1000)))
                        while ContinuousClock.now < end {
                            if device.silent && ContinuousClock.now >= silenceAt { return }
                            await beater.beat(device)
                            try? await Task.sleep(for: .milliseconds(Int64(period * Double.random(in: 0.9...1.1) * 1000)))
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        let elapsed = ContinuousClock.now - start
        var report = LoadReport(stats: stats.snapshot, elapsed: elapsed)
        if !noAudit, let token {
            report.audit = try await Auditor(
                client: client, admin: admin, token: token, offlineAfter: offlineAfter,
                scanInterval: scanInterval, slack: slack, sample: auditSample
            )
            .audit(fleet: fleet, lastBeat: lastBeat.times.withLock { $0 }, accepted: report.stats.ok)
        }
        print(report.text)
        if let json { try report.json.write(toFile: json, atomically: true, encoding: .utf8) }
        if let audit = report.audit, !audit.passed { throw ExitCode(3) }
    }

    static func progress(stats: LoadStats, start: ContinuousClock.Instant, end: ContinuousClock.Instant) async {
        var previous = 0
        while ContinuousClock.now < end {
            try? await Task.sleep(for: .seconds(1))
            let s = stats.snapshot
            let errors = s.byStatus.filter { $0.key != 200 }.sorted { $0.key < $1.key }.map { "\($0.key):\($0.value)" }
            let seconds = Int((ContinuousClock.now - start).components.seconds)
            print(
                "t=\(seconds)s sent=\(s.sent) ok=\(s.ok) errors=[\((errors + (s.transportErrors > 0 ? ["transport:\(s.transportErrors)"] : [])).joined(separator: " "))] rate=\(s.sent - previous)/s"
            )
            previous = s.sent
        }
    }
}

/// Sends one device's heartbeat and records the outcome.
struct Beater: Sendable {
    let client: HTTPClient
    let gateways: [String]
    let stats: LoadStats
    let lastBeat: BeatLog

    func beat(_ device: SimulatedDevice) async {
        let gateway = gateways[Int.random(in: 0..<gateways.count)]
        var request = HTTPClientRequest(url: "\(gateway)/api/v1/devices/\(device.id)/heartbeat")
        request.method = .POST
        request.headers.add(name: "Authorization", value: "Bearer \(device.token)")
        request.headers.add(name: "Content-Type", value: "application/json")
        let now = UTCTimestamp(millisecondsSinceEpoch: Int64(Date().timeIntervalSince1970 * 1000))
        request.body = .bytes(
            ByteBuffer(
                string:
                    #"{"device_id":"\#(device.id)","timestamp":"\#(now.iso8601)","current_playlist":"p1","storage_status":{"total_gb":64,"used_gb":32},"network_status":"connected","player_version":"loadgen"}"#
            ))
        let started = ContinuousClock.now
        do {
            let response = try await client.execute(request, timeout: .seconds(10))
            _ = try await response.body.collect(upTo: 64 * 1024)
            let elapsed = ContinuousClock.now - started
            stats.record(status: Int(response.status.code), microseconds: UInt64(max(0, elapsed.microseconds)))
            if response.status == .ok { lastBeat.times.withLock { $0[device.id] = Date() } }
        } catch {
            stats.recordTransportError()
        }
    }
}

/// When each device's last accepted heartbeat was sent.
final class BeatLog: Sendable {
    let times = Mutex<[DeviceID: Date]>([:])
}

/// A shared position in the fleet for the --rate workers.
final class RoundRobin: Sendable {
    private let position = Atomic<Int>(0)
    func next() -> Int { position.wrappingAdd(1, ordering: .relaxed).oldValue }
}
