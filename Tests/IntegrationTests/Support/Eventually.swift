/// Polls `condition` every 100 ms until it holds or `timeout` passes; its last answer.
func eventually(_ timeout: Duration = .seconds(3), _ condition: () async throws -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try await Task.sleep(for: .milliseconds(100))
    }
    return try await condition()
}
