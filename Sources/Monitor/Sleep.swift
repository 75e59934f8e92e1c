import ServiceLifecycle

/// Sleeps for `duration` unless graceful shutdown begins first.
/// - Returns: false when the caller should stop (shutdown or cancellation).
func sleepUnlessShuttingDown(_ duration: Duration) async -> Bool {
    do {
        try await cancelWhenGracefulShutdown { try await Task.sleep(for: duration) }
    } catch {
        return false
    }
    return !Task.isShuttingDownGracefully && !Task.isCancelled
}
