import CRdKafka
import Foundation

/// A record read back from Kafka.
public struct KafkaRecord: Sendable, Equatable {
    public var topic: String
    public var partition: Int
    public var offset: Int64
    public var key: String
    public var value: String
}

/// Reads topics from the beginning by assigning partitions directly (no consumer group, no
/// rebalance wait). For tests and audits.
///
/// `@unchecked Sendable`: the `rd_kafka_t` handle is thread-safe; reads are blocking and run on a
/// Dispatch thread, one at a time per reader by contract of the callers.
public final class KafkaTopicReader: @unchecked Sendable {
    private let handle: OpaquePointer

    public init(brokers: String, topics: [String], partitions: Int = 4) throws {
        let conf = try KafkaConfiguration.make([
            "bootstrap.servers": brokers, "group.id": "heartbeat-reader-\(UUID().uuidString)",
            "enable.auto.commit": "false", "enable.partition.eof": "false",
        ])
        var errstr = [CChar](repeating: 0, count: 512)
        guard let handle = rd_kafka_new(RD_KAFKA_CONSUMER, conf, &errstr, errstr.count) else {
            rd_kafka_conf_destroy(conf)
            throw KafkaError.configuration(String(cString: errstr))
        }
        self.handle = handle
        rd_kafka_poll_set_consumer(handle)
        let list = rd_kafka_topic_partition_list_new(Int32(topics.count * partitions))
        defer { rd_kafka_topic_partition_list_destroy(list) }
        for topic in topics {
            for partition in 0..<partitions {
                rd_kafka_topic_partition_list_add(list, topic, Int32(partition)).pointee.offset = Int64(RD_KAFKA_OFFSET_BEGINNING)
            }
        }
        let error = rd_kafka_assign(handle, list)
        guard error == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError.configuration(KafkaConfiguration.errorText(error)) }
    }

    deinit {
        rd_kafka_consumer_close(handle)
        rd_kafka_destroy(handle)
    }

    /// Everything that arrives within `duration`, stopping early once the reader has been idle for
    /// `idle` after the first record (connecting and fetching may take longer than `idle`).
    public func read(for duration: Duration, idle: Duration = .milliseconds(500)) async -> [KafkaRecord] {
        await withCheckedContinuation { continuation in
            let shared = KafkaHandle(pointer: handle)
            DispatchQueue.global().async {
                let handle = shared.pointer
                var records: [KafkaRecord] = []
                let deadline = ContinuousClock.now + duration
                var lastRecord: ContinuousClock.Instant?
                while ContinuousClock.now < deadline {
                    if let lastRecord, ContinuousClock.now - lastRecord >= idle { break }
                    guard let message = rd_kafka_consumer_poll(handle, 50) else { continue }
                    defer { rd_kafka_message_destroy(message) }
                    let m = message.pointee
                    guard m.err == RD_KAFKA_RESP_ERR_NO_ERROR else { continue }
                    func text(_ pointer: UnsafeRawPointer?, _ length: Int) -> String {
                        guard let pointer else { return "" }
                        return String(decoding: UnsafeRawBufferPointer(start: pointer, count: length), as: UTF8.self)
                    }
                    records.append(
                        KafkaRecord(
                            topic: String(cString: rd_kafka_topic_name(m.rkt)), partition: Int(m.partition), offset: m.offset,
                            key: text(m.key, m.key_len), value: text(m.payload, m.len)))
                    lastRecord = ContinuousClock.now
                }
                continuation.resume(returning: records)
            }
        }
    }
}
