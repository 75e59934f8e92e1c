import Configuration
import Foundation
import HeartbeatDomain
import Logging
import Metrics
import RedisAdapter

/// What both executables do before anything else: `--help`, environment parsing that stops with a
/// clear message (exit code 2) on a bad value, SIGPIPE ignored.
public enum ProcessStartup {
    /// Prints `usage` and returns true when `--help`/`-h` is on the command line.
    public static func helpRequested(_ usage: String) -> Bool {
        guard CommandLine.arguments.contains(where: { $0 == "--help" || $0 == "-h" }) else { return false }
        print(usage)
        return true
    }

    /// Parses the configuration from the environment, or exits with status 2 naming what is wrong.
    public static func configuration<T>(_ program: String, _ parse: (ConfigReader) throws(ConfigurationError) -> T) -> T {
        // hiredis and libpq write with plain write(2): a peer reset must be an error, not a signal.
        signal(SIGPIPE, SIG_IGN)
        do {
            return try parse(ConfigReader(provider: EnvironmentVariablesProvider()))
        } catch {
            FileHandle.standardError.write(Data("\(program): \(error)\n".utf8))
            exit(2)
        }
    }

    /// Stops the process with status 2 and the message when `error` is a deployment mismatch found
    /// at start (another `BUCKETS` than the deployment's), like a bad setting; returns otherwise.
    public static func stopOnDeploymentMismatch(_ program: String, _ error: any Error) {
        guard let mismatch = error as? BucketCountMismatch else { return }
        FileHandle.standardError.write(Data("\(program): \(mismatch)\n".utf8))
        exit(2)
    }

    /// Stops the process with status 1 and a critical log line naming what it could not reach at
    /// start (PostgreSQL after its wait, say), instead of an uncaught error's crash report.
    public static func stopOnStartFailure(_ program: String, _ error: any Error, logger: Logger) -> Never {
        logger.critical("could not start", metadata: ["error": "\(error)"])
        FileHandle.standardError.write(Data("\(program): could not start: \(error)\n".utf8))
        exit(1)
    }

    /// Prints `<program> <version>` and returns true when `--version` is on the command line.
    public static func versionRequested(_ program: String) -> Bool {
        guard CommandLine.arguments.contains("--version") else { return false }
        print("\(program) \(BuildInfo.version)")
        return true
    }

    /// A logger at the configured level, after pointing the process's logging at `format`'s output
    /// (JSON lines on standard output, or swift-log's text lines on standard error).
    public static func logger(_ program: String, level: Logger.Level, format: LogFormat = .text) -> Logger {
        switch format {
        case .json: LoggingSystem.bootstrap { label in JSONLogHandler(label: label) }
        case .text: LoggingSystem.bootstrap { label in StreamLogHandler.standardError(label: label) }
        }
        var logger = Logger(label: program)
        logger.logLevel = level
        return logger
    }
}

extension Metrics.Timer {
    /// Records the time elapsed since `start`.
    public func recordInterval(since start: ContinuousClock.Instant) {
        let elapsed = ContinuousClock.now - start
        recordNanoseconds(elapsed.nanoseconds)
    }
}
