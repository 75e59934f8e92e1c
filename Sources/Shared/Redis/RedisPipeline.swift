import Foundation
import Logging

/// One Redis connection served by a dedicated thread, pipelining every request queued since its
/// last round trip.
///
/// Callers encode their command and suspend; the thread takes everything queued, writes it in one
/// go, reads the replies in order and resumes each caller. So hiredis's blocking calls never run on
/// Swift's cooperative pool or an event loop, and one connection carries many concurrent requests.
///
/// `@unchecked Sendable`: `queue`, `stopping` and `onExit` are only touched while holding
/// `condition`; `connection` and `lastFailure` are only touched by the pipeline's own thread.
final class RedisPipeline: @unchecked Sendable {
    private struct Pending {
        var command: [UInt8]
        /// Preceded by `ASKING` (a cluster `ASK` redirection).
        var asking: Bool
        var waiter: Waiter
    }

    /// Who gets a reply: a suspended task, or a callback run on the pipeline's thread.
    private enum Waiter {
        case task(CheckedContinuation<RedisValue, any Error>)
        case callback(@Sendable (Result<RedisValue, any Error>) -> Void)

        func resume(with result: Result<RedisValue, any Error>) {
            switch self {
            case .task(let continuation): continuation.resume(with: result)
            case .callback(let callback): callback(result)
            }
        }
    }

    private let endpoint: RedisEndpoint
    private let timeout: Duration
    private let reconnectBackoff: Duration
    private let logger: Logger
    private let maxBatch = 1024

    private let condition = NSCondition()
    private var queue: [Pending] = []
    private var stopping = false
    private var exited = false
    private var onExit: [CheckedContinuation<Void, Never>] = []

    private var connection: RedisConnection?
    private var lastFailure: (at: ContinuousClock.Instant, error: RedisError)?

    init(endpoint: RedisEndpoint, timeout: Duration, reconnectBackoff: Duration, name: String, logger: Logger) {
        self.endpoint = endpoint
        self.timeout = timeout
        self.reconnectBackoff = reconnectBackoff
        self.logger = logger
        let thread = Thread { [self] in self.runLoop() }
        thread.name = name
        thread.start()
    }

    /// Queues one RESP-encoded command and waits for its reply.
    /// - Parameter asking: send `ASKING` right before it, on the same connection (cluster `ASK`).
    func send(_ command: [UInt8], asking: Bool = false) async throws -> RedisValue {
        try await withCheckedThrowingContinuation { continuation in
            enqueue(Pending(command: command, asking: asking, waiter: .task(continuation)))
        }
    }

    /// Queues one RESP-encoded command; `completion` gets its reply on the pipeline's thread (it must
    /// not block: every reply of the same round trip waits for it). For callers on an event loop
    /// that hop back themselves, without a Swift task per command.
    func send(_ command: [UInt8], completion: @escaping @Sendable (Result<RedisValue, any Error>) -> Void) {
        enqueue(Pending(command: command, asking: false, waiter: .callback(completion)))
    }

    private func enqueue(_ pending: Pending) {
        condition.lock()
        if stopping {
            condition.unlock()
            pending.waiter.resume(with: .failure(RedisError.shutdown))
            return
        }
        queue.append(pending)
        if queue.count == 1 { condition.signal() }
        condition.unlock()
    }

    /// Lets queued commands finish, then stops the thread and closes the connection.
    func shutdown() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            condition.lock()
            stopping = true
            if exited {
                condition.unlock()
                continuation.resume()
                return
            }
            onExit.append(continuation)
            condition.signal()
            condition.unlock()
        }
    }

    private func runLoop() {
        while true {
            condition.lock()
            while queue.isEmpty && !stopping { condition.wait() }
            if queue.isEmpty && stopping {
                exited = true
                let waiters = onExit
                onExit = []
                condition.unlock()
                connection = nil
                for waiter in waiters { waiter.resume() }
                return
            }
            let batch: [Pending]
            if queue.count <= maxBatch {
                batch = queue
                queue.removeAll(keepingCapacity: true)
            } else {
                batch = Array(queue.prefix(maxBatch))
                queue.removeFirst(maxBatch)
            }
            condition.unlock()
            execute(batch)
        }
    }

    private func execute(_ batch: [Pending]) {
        var remaining = batch[...]
        var retried = false
        while !remaining.isEmpty {
            let reused = self.connection != nil
            let connection: RedisConnection
            do {
                connection = try connected()
            } catch {
                for pending in remaining { pending.waiter.resume(with: .failure(error)) }
                return
            }
            let commands = remaining.map(\.command)
            let base = remaining.startIndex
            let asking = remaining.contains(where: \.asking) ? remaining.map(\.asking) : nil
            let failure = connection.pipeline(commands, asking: asking) { index, value in
                remaining[base + index].waiter.resume(with: .success(value))
            }
            guard let failure else { return }
            self.connection = nil
            logger.warning("Redis connection lost", metadata: ["error": "\(failure.error)"])
            remaining = remaining.dropFirst(failure.delivered)
            if failure.safeToRetry && !retried && reused {
                retried = true  // the peer closed an idle connection (e.g. a Redis restart): resend once
                continue
            }
            lastFailure = (ContinuousClock.now, failure.error)
            for pending in remaining { pending.waiter.resume(with: .failure(failure.error)) }
            return
        }
    }

    /// The open connection, or a new one. Within `reconnectBackoff` of a failed attempt, fails at
    /// once with that attempt's error instead of trying again, so a Redis outage costs callers
    /// microseconds, not a connect timeout each.
    private func connected() throws(RedisError) -> RedisConnection {
        if let connection { return connection }
        if let lastFailure, ContinuousClock.now - lastFailure.at < reconnectBackoff {
            throw lastFailure.error
        }
        do {
            let connection = try RedisConnection.connect(to: endpoint, timeout: timeout)
            if lastFailure != nil { logger.info("Redis connection restored", metadata: ["endpoint": "\(endpoint.host):\(endpoint.port)"]) }
            self.connection = connection
            lastFailure = nil
            return connection
        } catch {
            if lastFailure == nil { logger.error("Redis connect failed", metadata: ["error": "\(error)"]) }
            lastFailure = (ContinuousClock.now, error)
            throw error
        }
    }
}
