import HeartbeatDomain
import Synchronization

/// ``DeviceRepository`` in memory, for tests of the ops API, the re-seed and the reconciler:
/// devices, their heartbeats and status events, with PostgreSQL's ordering and paging.
final class InMemoryDeviceRepository: DeviceRepository {
    struct Device: Sendable {
        var record: DeviceRecord
        var tokenHash: String?
        var registeredAt: UTCTimestamp
    }

    struct State: Sendable {
        var devices: [DeviceID: Device] = [:]
        var heartbeats: [DeviceID: [HeartbeatRecord]] = [:]
        var events: [DeviceID: [StatusEventRecord]] = [:]
        var reachable = true
    }

    let state = Mutex(State())

    struct Unreachable: Error {}

    /// Adds a device as if registered and, when `status` is online, beating until `lastHeartbeatMs`.
    func add(_ id: DeviceID, name: String = "device", status: DeviceStatus = .unknown, lastHeartbeatMs: Int64? = nil, tokenHash: String = "hash") {
        state.withLock {
            $0.devices[id] = Device(
                record: DeviceRecord(
                    id: id, name: name, status: status, statusVersion: 0,
                    lastHeartbeat: lastHeartbeatMs.map(UTCTimestamp.init(millisecondsSinceEpoch:))),
                tokenHash: tokenHash, registeredAt: .now)
        }
    }

    private func read<T: Sendable>(_ body: (State) -> T) throws -> T {
        try state.withLock { state in
            guard state.reachable else { throw Unreachable() }
            return body(state)
        }
    }

    private func write<T: Sendable>(_ body: (inout State) throws -> T) throws -> T {
        try state.withLock { state in
            guard state.reachable else { throw Unreachable() }
            return try body(&state)
        }
    }

    func insert(id: DeviceID, name: String, tokenHash: String) async throws {
        try write { state in
            guard state.devices[id] == nil else { throw DeviceRepositoryError.exists }
            state.devices[id] = Device(
                record: DeviceRecord(id: id, name: name, status: .unknown, statusVersion: 0), tokenHash: tokenHash, registeredAt: .now)
        }
    }

    func delete(_ id: DeviceID) async throws { try write { $0.devices[id] = nil } }

    func replaceToken(of id: DeviceID, hash: String) async throws -> DeviceRecord? {
        try write { state in
            state.devices[id]?.tokenHash = hash
            return state.devices[id]?.record
        }
    }

    func assignPlaylist(_ playlist: String, to id: DeviceID) async throws -> Bool {
        try write { state in
            state.devices[id]?.record.playlist = playlist
            return state.devices[id] != nil
        }
    }

    func exists(_ id: DeviceID) async throws -> Bool { try read { $0.devices[id] != nil } }

    private func page(after: DeviceID?, limit: Int, where include: (Device) -> Bool) throws -> [Device] {
        try read { state in
            Array(
                state.devices.values.filter { device in include(device) && (after.map { device.record.id.string > $0.string } ?? true) }
                    .sorted { $0.record.id.string < $1.record.id.string }.prefix(limit))
        }
    }

    func list(status: DeviceStatus?, after: DeviceID?, limit: Int) async throws -> [DeviceRecord] {
        try page(after: after, limit: limit) { status == nil || $0.record.status == status }.map(\.record)
    }

    func find(_ id: DeviceID) async throws -> DeviceRecord? { try read { $0.devices[id]?.record } }

    func registeredAt(_ id: DeviceID) async throws -> UTCTimestamp? { try read { $0.devices[id]?.registeredAt } }

    func heartbeats(of id: DeviceID, from: UTCTimestamp?, to: UTCTimestamp?, limit: Int) async throws -> [HeartbeatRecord] {
        try read { state in
            Array(
                (state.heartbeats[id] ?? []).filter { row in from.map { row.receivedAt >= $0 } ?? true && to.map { row.receivedAt <= $0 } ?? true }
                    .sorted { $0.receivedAt > $1.receivedAt }.prefix(limit))
        }
    }

    func events(of id: DeviceID, limit: Int) async throws -> [StatusEventRecord] {
        try read { Array(($0.events[id] ?? []).reversed().prefix(limit)) }
    }

    func statusChanges(of id: DeviceID, from: UTCTimestamp, to: UTCTimestamp) async throws -> [UptimeCalculator.Change] {
        try read { state in
            let events = (state.events[id] ?? []).sorted { $0.at < $1.at }
            let before = events.last { $0.at < from }
            return ((before.map { [$0] } ?? []) + events.filter { $0.at >= from && $0.at < to }).compactMap { event in
                DeviceStatus(rawValue: event.to).map { UptimeCalculator.Change(status: $0, atMs: event.at.millisecondsSinceEpoch) }
            }
        }
    }

    func registered(after: DeviceID?, limit: Int) async throws -> [RegisteredDevice] {
        try page(after: after, limit: limit) { $0.tokenHash != nil }.map { device in
            RegisteredDevice(
                id: device.record.id, tokenHash: device.tokenHash ?? "", playlist: device.record.playlist,
                online: device.record.status == .online, lastHeartbeatMs: device.record.lastHeartbeat?.millisecondsSinceEpoch)
        }
    }

    func online(after: DeviceID?, limit: Int) async throws -> [DeviceID] {
        try page(after: after, limit: limit) { $0.record.status == .online }.map(\.record.id)
    }

    func lastHeartbeats(of ids: [DeviceID]) async throws -> [ScoredDevice] {
        try read { state in
            ids.compactMap { id in
                state.devices[id].map { device in
                    ScoredDevice(
                        id: id,
                        scoreMs: (device.record.lastHeartbeat ?? device.record.statusChangedAt ?? device.registeredAt).millisecondsSinceEpoch)
                }
            }
        }
    }

    func notOnline(among ids: [DeviceID]) async throws -> Set<DeviceID> {
        try read { state in Set(ids.filter { state.devices[$0]?.record.status != .online }) }
    }

    func countByStatus() async throws -> [DeviceStatus: Int] {
        try read { state in Dictionary(state.devices.values.map { ($0.record.status, 1) }, uniquingKeysWith: +) }
    }

    func ping() async throws { _ = try read { _ in true } }
}
