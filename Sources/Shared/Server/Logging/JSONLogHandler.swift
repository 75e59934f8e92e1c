import Foundation
import HeartbeatDomain
import Logging
import Synchronization

/// Writes each log record as one JSON line: `timestamp` (UTC, milliseconds), `level`, `logger`,
/// `message`, `source`, then the metadata as fields of their own (nested metadata as its JSON text).
/// A record is written whole with one `write`, so lines from many threads never interleave.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let sink: @Sendable (String) -> Void

    /// A handler for `label` writing to `sink` (standard output by default).
    public init(label: String, sink: @escaping @Sendable (String) -> Void = JSONLogHandler.standardOutput) {
        self.label = label
        self.sink = sink
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(
        level: Logger.Level, message: Logger.Message, metadata explicit: Logger.Metadata?, source: String,
        file: String, function: String, line: UInt
    ) {
        var fields = self.metadata
        if let provided = metadataProvider?.get() { fields.merge(provided) { $1 } }
        if let explicit { fields.merge(explicit) { $1 } }
        sink(Self.line(at: Date(), level: level, logger: label, message: "\(message)", source: source, metadata: fields))
    }

    /// The JSON line of one record (without the newline).
    public static func line(
        at date: Date, level: Logger.Level, logger: String, message: String, source: String,
        metadata: Logger.Metadata
    ) -> String {
        var json = JSONText.Object(capacity: 160)
        json.add("timestamp", string: UTCTimestamp(millisecondsSinceEpoch: Int64((date.timeIntervalSince1970 * 1000).rounded(.down))).iso8601)
        json.add("level", string: level.rawValue)
        json.add("logger", string: logger)
        json.add("message", string: message)
        json.add("source", string: source)
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) where !["timestamp", "level", "logger", "message", "source"].contains(key) {
            json.add(key, string: "\(value)")
        }
        return json.text
    }

    /// Writes a line and its newline to standard output in one call.
    public static let standardOutput: @Sendable (String) -> Void = { line in
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }
}
