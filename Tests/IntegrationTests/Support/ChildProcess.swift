import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A child process started with `posix_spawn` and stopped with a signal and `waitpid`.
///
/// Foundation's `Process.waitUntilExit` can hang when called from Swift concurrency on Linux
/// (it spins a run loop that nothing wakes), so test servers are managed at the POSIX level.
struct ChildProcess: Sendable {
    let pid: pid_t

    /// Starts `path` with `arguments`, stdout and stderr to `output` (default `/dev/null`).
    static func spawn(_ path: String, _ arguments: [String], environment: [String: String]? = nil, output: String = "/dev/null") throws
        -> ChildProcess
    {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, output, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        // Threads of the test process (Dispatch's among them) block signals; a child inherits the
        // mask, and a redis-server with SIGTERM blocked cannot be stopped. Start it with none blocked.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGTERM, SIGINT, SIGPIPE, SIGUSR1, SIGUSR2] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for arg in argv { free(arg) } }
        var pid: pid_t = 0
        let envp: [UnsafeMutablePointer<CChar>?]? = environment.map { $0.map { strdup("\($0.key)=\($0.value)") } + [nil] }
        defer { for pointer in envp ?? [] { free(pointer) } }
        let status =
            envp.map { posix_spawn(&pid, path, &actions, &attributes, argv, $0) } ?? posix_spawn(&pid, path, &actions, &attributes, argv, environ)
        guard status == 0 else { throw TestFailure("cannot start \(path): \(String(cString: strerror(status)))") }
        return ChildProcess(pid: pid)
    }

    /// Runs `path` to completion (output discarded). Returns its exit status.
    static func runToCompletion(_ path: String, _ arguments: [String]) -> Int32 {
        guard let child = try? spawn(path, arguments) else { return -1 }
        var status: Int32 = 0
        waitpid(child.pid, &status, 0)
        return status & 0x7f == 0 ? (status >> 8) & 0xff : -(status & 0x7f)
    }

    /// True while the child has not exited (reaps it when it has).
    var isRunning: Bool {
        var status: Int32 = 0
        return waitpid(pid, &status, WNOHANG) == 0
    }

    /// Sends `signal` and waits up to `timeout` for the child to exit.
    /// - Returns: its exit code, or nil when it did not exit by itself (it is then killed).
    func terminate(signal: Int32 = SIGTERM, timeout: Duration = .seconds(10)) -> Int32? {
        kill(pid, signal)
        var status: Int32 = 0
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if waitpid(pid, &status, WNOHANG) == pid {
                return status & 0x7f == 0 ? (status >> 8) & 0xff : -(status & 0x7f)
            }
            usleep(10_000)
        }
        kill(pid, SIGKILL)
        waitpid(pid, &status, 0)
        return nil
    }

    /// Sends SIGTERM and waits for the child to exit (SIGKILL after 5 s).
    func stop() {
        guard kill(pid, SIGTERM) == 0 else { return }
        var status: Int32 = 0
        for _ in 0..<500 {
            if waitpid(pid, &status, WNOHANG) != 0 { return }
            usleep(10_000)
        }
        kill(pid, SIGKILL)
        waitpid(pid, &status, 0)
    }
}
