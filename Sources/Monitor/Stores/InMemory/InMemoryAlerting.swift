import HeartbeatDomain
import Synchronization

/// ``AlertStore`` in memory, for tests of the alerter.
final class InMemoryAlertStore: AlertStore {
    let events = Mutex<[StatusAlertEvent]>([])
    let alerted = Mutex<Set<Int64>>([])
    let offline = Mutex<[OfflineDevice]>([])

    func unalerted(limit: Int) async throws -> [StatusAlertEvent] {
        let done = alerted.withLock { $0 }
        return events.withLock { Array($0.filter { !done.contains($0.outboxID) }.prefix(limit)) }
    }

    func markAlerted(_ outboxIDs: [Int64], lease: Leadership.Lease) async throws {
        alerted.withLock { $0.formUnion(outboxIDs) }
    }

    func offlineDevices(after: DeviceID?, limit: Int) async throws -> [OfflineDevice] {
        offline.withLock { devices in
            Array(
                devices.sorted { $0.id.string < $1.id.string }.filter { device in after.map { device.id.string > $0.string } ?? true }.prefix(limit))
        }
    }
}

/// ``AlertSink`` in memory: keeps every post; fails while ``failing`` is set.
final class InMemoryAlertSink: AlertSink {
    let posts = Mutex<[[Alert]]>([])
    let failing = Mutex(false)

    struct Down: Error {}

    func post(_ alerts: [Alert]) async throws {
        guard !failing.withLock({ $0 }) else { throw Down() }
        posts.withLock { $0.append(alerts) }
    }
}
