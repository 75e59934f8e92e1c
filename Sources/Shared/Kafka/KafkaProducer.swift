import CRdKafka
import Foundation
import HeartbeatDomain
import Synchronization

/// An idempotent Kafka producer (`acks=all`) whose ``send(topic:key:value:)`` returns once the
/// broker has acknowledged the message.
///
/// `@unchecked Sendable`: the only stored C state is the `rd_kafka_t` handle, which librdkafka
/// documents as thread-safe; delivery reports are served by the producer's own poll thread.
public final class KafkaProducer: @unchecked Sendable {
    private let handle: OpaquePointer
    private let poll = PollLoop()

    /// The poll thread's stop flag and exit signal.
    private final class PollLoop: Sendable {
        let stopping = Atomic<Bool>(false)
        let done = DispatchSemaphore(value: 0)
    }

    /// One message's delivery: completed by the delivery report (on the poll thread), awaited by the sender.
    /// Retained by librdkafka (as the message's opaque) until its report arrives.
    final class Delivery: Sendable {
        private enum State {
            case pending(CheckedContinuation<Result<Void, KafkaError>, Never>?)
            case done(Result<Void, KafkaError>)
        }
        private let state = Mutex<State>(.pending(nil))

        func complete(_ result: Result<Void, KafkaError>) {
            let waiter: CheckedContinuation<Result<Void, KafkaError>, Never>? = state.withLock { state in
                guard case .pending(let waiter) = state else { return nil }
                state = .done(result)
                return waiter
            }
            waiter?.resume(returning: result)
        }

        func wait() async -> Result<Void, KafkaError> {
            await withCheckedContinuation { continuation in
                let ready: Result<Void, KafkaError>? = state.withLock { state in
                    if case .done(let result) = state { return result }
                    state = .pending(continuation)
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        }
    }

    /// A message to produce.
    public struct Message: Sendable {
        public var topic: String
        public var key: String
        public var value: String
        public init(topic: String, key: String, value: String) {
            self.topic = topic
            self.key = key
            self.value = value
        }
    }

    /// - Parameters:
    ///   - brokers: `host:port[,host:port…]`.
    ///   - messageTimeout: how long librdkafka retries one message before reporting it failed.
    ///   - properties: extra librdkafka properties (override the defaults).
    public init(brokers: String, clientID: String, messageTimeout: Duration = .seconds(30), properties: [String: String] = [:]) throws {
        var settings = [
            "bootstrap.servers": brokers,
            "client.id": clientID,
            "enable.idempotence": "true",
            "acks": "all",
            "linger.ms": "5",
            "message.timeout.ms": String(messageTimeout.components.seconds * 1000),
            "retry.backoff.ms": "200",
            "reconnect.backoff.max.ms": "2000",
        ]
        settings.merge(properties) { $1 }
        let conf = try KafkaConfiguration.make(settings)
        rd_kafka_conf_set_dr_msg_cb(conf) { _, message, _ in
            guard let message, let opaque = message.pointee._private else { return }
            let delivery = Unmanaged<Delivery>.fromOpaque(opaque).takeRetainedValue()
            let error = message.pointee.err
            delivery.complete(error == RD_KAFKA_RESP_ERR_NO_ERROR ? .success(()) : .failure(.delivery(KafkaConfiguration.errorText(error))))
        }
        var errstr = [CChar](repeating: 0, count: 512)
        guard let handle = rd_kafka_new(RD_KAFKA_PRODUCER, conf, &errstr, errstr.count) else {
            rd_kafka_conf_destroy(conf)
            throw KafkaError.configuration(String(cString: errstr))
        }
        self.handle = handle
        let shared = KafkaHandle(pointer: handle)
        let thread = Thread { [shared, poll] in
            while !poll.stopping.load(ordering: .relaxed) { rd_kafka_poll(shared.pointer, 100) }
            poll.done.signal()
        }
        thread.name = "kafka-poll"
        thread.start()
    }

    deinit {
        // Stopping the poll thread and rd_kafka_destroy block: do it on a Dispatch thread, never on
        // the cooperative pool the last reference may be released from.
        let shared = KafkaHandle(pointer: handle)
        let poll = self.poll
        DispatchQueue.global().async {
            if !poll.stopping.exchange(true, ordering: .relaxed) { poll.done.wait() }
            rd_kafka_destroy(shared.pointer)
        }
    }

    /// Produces one message and waits for the broker's acknowledgement.
    /// - Throws: ``KafkaError/delivery(_:)`` when librdkafka gave up on it (see `messageTimeout`).
    public func send(topic: String, key: String, value: String) async throws {
        try await send([Message(topic: topic, key: key, value: value)])[0].get()
    }

    /// Produces messages in order (so per-key order holds), then waits for every acknowledgement.
    /// - Returns: one result per message, in the same order.
    public func send(_ messages: [Message]) async -> [Result<Void, KafkaError>] {
        var deliveries: [Delivery] = []
        deliveries.reserveCapacity(messages.count)
        for message in messages {
            let delivery = Delivery()
            deliveries.append(delivery)
            var outcome = produce(message, delivery: delivery)
            var waited = 0
            while outcome == .queueFull && waited < 500 {
                // the local queue is full: the poll thread drains delivery reports meanwhile
                try? await Task.sleep(for: .milliseconds(2))
                waited += 1
                outcome = produce(message, delivery: delivery)
            }
            switch outcome {
            case .queued: break
            case .queueFull: delivery.complete(.failure(.produce("local queue stayed full")))
            case .failed(let error): delivery.complete(.failure(error))
            }
        }
        var results: [Result<Void, KafkaError>] = []
        results.reserveCapacity(messages.count)
        for delivery in deliveries { results.append(await delivery.wait()) }
        return results
    }

    private enum ProduceOutcome: Equatable {
        case queued, queueFull
        case failed(KafkaError)
    }

    /// Hands one message to librdkafka without blocking; on `.queued` its report completes `delivery`.
    private func produce(_ message: Message, delivery: Delivery) -> ProduceOutcome {
        guard !poll.stopping.load(ordering: .relaxed) else { return .failed(.closed) }
        if let fatal = fatalError() { return .failed(fatal) }
        let opaque = Unmanaged.passRetained(delivery).toOpaque()
        var key = Array(message.key.utf8)
        var value = Array(message.value.utf8)
        let error = heartbeat_kafka_produce(handle, message.topic, &key, key.count, &value, value.count, opaque)
        if error == RD_KAFKA_RESP_ERR_NO_ERROR { return .queued }
        Unmanaged<Delivery>.fromOpaque(opaque).release()
        if error == RD_KAFKA_RESP_ERR__QUEUE_FULL { return .queueFull }
        let text = KafkaConfiguration.errorText(error)
        return .failed(error == RD_KAFKA_RESP_ERR__FATAL ? .fatal(fatalError()?.description ?? text) : .produce(text))
    }

    /// The producer's fatal error (idempotence can no longer be guaranteed), if it has one:
    /// then every later send fails and the owner must create a new producer.
    public func fatalError() -> KafkaError? {
        var reason = [CChar](repeating: 0, count: 512)
        let code = rd_kafka_fatal_error(handle, &reason, reason.count)
        guard code != RD_KAFKA_RESP_ERR_NO_ERROR else { return nil }
        return .fatal(String(cString: reason))
    }

    /// Waits (on a Dispatch thread) up to `timeout` for queued messages to be delivered.
    /// - Returns: true when nothing is left in flight.
    public func flush(timeout: Duration) async -> Bool {
        let ms = Int32(timeout.milliseconds)
        return await withCheckedContinuation { continuation in
            let shared = KafkaHandle(pointer: handle)
            DispatchQueue.global().async {
                continuation.resume(returning: rd_kafka_flush(shared.pointer, ms) == RD_KAFKA_RESP_ERR_NO_ERROR)
            }
        }
    }
}
