/// An `rd_kafka_t` pointer that may cross threads.
///
/// `@unchecked Sendable`: librdkafka documents `rd_kafka_t` as thread-safe; the owning class
/// (producer or reader) controls its lifetime and destroys it exactly once.
struct KafkaHandle: @unchecked Sendable {
    let pointer: OpaquePointer
}
