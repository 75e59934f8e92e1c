import ServiceLifecycle

/// A pool is a service: it closes its connections at graceful shutdown, after the services listed
/// after it (its users) have stopped.
extension PostgresPool: Service {
    public func run() async throws {
        try? await gracefulShutdown()
        await close()
    }
}
