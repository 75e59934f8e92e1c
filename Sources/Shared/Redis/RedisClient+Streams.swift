import HeartbeatDomain

/// The stream and consumer-group commands, with typed replies (in the spirit of valkey-swift's
/// `XAUTOCLAIMResponse`): the one place their command text and reply shapes are known.
extension RedisClient {
    /// `XGROUP CREATE stream group 0 MKSTREAM`: from the stream's start, so nothing written before is
    /// missed. An existing group is left as it is.
    public func xgroupCreate(_ stream: String, group: String) async throws {
        let reply = try await send(["XGROUP", "CREATE", stream, group, "0", "MKSTREAM"])
        if case .error(let message) = reply, !message.hasPrefix("BUSYGROUP") { throw RedisError.server(message) }
    }

    /// `XAUTOCLAIM stream group consumer 0 0-0 COUNT n`: entries pending in the group (idle any time), now this consumer's.
    public func xautoclaim(_ stream: String, group: String, consumer: String, count: Int) async throws -> XAutoClaimResponse {
        let reply = try await execute(["XAUTOCLAIM", stream, group, consumer, "0", "0-0", "COUNT", String(count)])
        guard let parts = reply.array, parts.count >= 2 else { throw RedisError.unexpectedReply("XAUTOCLAIM returned \(reply)") }
        return XAutoClaimResponse(next: parts[0].string ?? "0-0", entries: StreamEntry.list(parts[1]))
    }

    /// `XREADGROUP GROUP group consumer COUNT n STREAMS stream >`: entries never delivered to the group.
    public func xreadgroup(_ stream: String, group: String, consumer: String, count: Int) async throws -> [StreamEntry] {
        let reply = try await execute(["XREADGROUP", "GROUP", group, consumer, "COUNT", String(count), "STREAMS", stream, ">"])
        guard let streams = reply.array, let first = streams.first?.array, first.count == 2 else { return [] }
        return StreamEntry.list(first[1])
    }

    /// `XRANGE stream (id + COUNT n`: up to `count` entries after `id`, oldest first.
    public func xrange(_ stream: String, after id: String, count: Int) async throws -> [StreamEntry] {
        StreamEntry.list(try await execute(["XRANGE", stream, "(" + id, "+", "COUNT", String(count)]))
    }

    /// Moves `group` on to `id`, past `count` more entries, and trims the entries up to `id`, in one
    /// atomic step (``StreamGroupScript/advance``): only if the group is still at `expected` and
    /// holds no pending entry. Returns whether it moved; when it did not, another instance moved
    /// it or read with it meanwhile, and the group stays as they left it.
    public func advanceGroup(_ stream: String, group: String, from expected: String, to id: StreamID, count: Int) async throws -> Bool {
        let reply = try await run(
            StreamGroupScript.advance, keys: [stream], arguments: [group, expected, id.description, String(count), id.successor.description])
        return reply.integer == 1
    }

    /// `XACK`: the entries are done with.
    public func xack(_ stream: String, group: String, ids: [String]) async throws {
        guard !ids.isEmpty else { return }
        try await execute(["XACK", stream, group] + ids)
    }

    /// `XPENDING stream group` (the summary form).
    public func xpending(_ stream: String, group: String) async throws -> XPendingSummary {
        let summary = try await execute(["XPENDING", stream, group]).array ?? []
        let count = summary.first?.integer ?? 0
        return XPendingSummary(count: Int(count), lowest: count > 0 && summary.count >= 2 ? summary[1].string.flatMap(StreamID.init) : nil)
    }

    /// `XTRIM stream MINID id`: drops every entry before `id`.
    public func xtrim(_ stream: String, minID: StreamID) async throws {
        try await execute(["XTRIM", stream, "MINID", minID.description])
    }

    /// `XINFO STREAM`.
    public func xinfoStream(_ stream: String) async throws -> XInfoStream {
        let fields = try await execute(["XINFO", "STREAM", stream]).array ?? []
        guard let length = Self.field("length", in: fields)?.integer, let added = Self.field("entries-added", in: fields)?.integer else {
            throw RedisError.unexpectedReply("XINFO STREAM \(stream) has no length or entries-added (Redis 7 is needed)")
        }
        return XInfoStream(length: Int(length), entriesAdded: Int(added))
    }

    /// `XINFO GROUPS`; none for a stream that does not exist (Redis lost it, or nothing was added yet).
    public func xinfoGroups(_ stream: String) async throws -> [XInfoGroup] {
        let reply: RedisValue
        do {
            reply = try await execute(["XINFO", "GROUPS", stream])
        } catch RedisError.server(let message) where message.hasPrefix("ERR no such key") {
            return []
        }
        return (reply.array ?? []).compactMap { group in
            let fields = group.array ?? []
            guard let name = Self.field("name", in: fields)?.string, let delivered = Self.field("last-delivered-id", in: fields)?.string else {
                return nil
            }
            return XInfoGroup(
                name: name, lastDeliveredID: delivered, pending: Int(Self.field("pending", in: fields)?.integer ?? 0),
                entriesRead: Self.field("entries-read", in: fields)?.integer.map(Int.init), lag: Self.field("lag", in: fields)?.integer.map(Int.init))
        }
    }

    /// `XGROUP SETID stream group id ENTRIESREAD n`: the group's position and its count of entries read.
    public func xgroupSetID(_ stream: String, group: String, id: String, entriesRead: Int) async throws {
        try await execute(["XGROUP", "SETID", stream, group, id, "ENTRIESREAD", String(entriesRead)])
    }

    /// How many entries `XRANGE stream start end` holds.
    public func xrangeCount(_ stream: String, from start: String, to end: String) async throws -> Int {
        try await execute(["XRANGE", stream, start, end]).array?.count ?? 0
    }

    /// The server's `run_id` (changes when Redis restarts); in cluster mode the primaries' run ids
    /// joined by `,` (changes when any primary restarts or a replica takes over).
    public func serverRunID() async throws -> String? {
        var runIDs: [String] = []
        for reply in try await sendToEachPrimary(["INFO", "server"]) {
            if case .error(let message) = reply { throw RedisError.server(message) }
            guard let runID = Self.runID(inInfo: reply) else { return nil }
            runIDs.append(runID)
        }
        return runIDs.joined(separator: ",")
    }

    /// The `run_id` line of an `INFO server` reply.
    public static func runID(inInfo reply: RedisValue) -> String? {
        guard let info = reply.string, let line = info.split(whereSeparator: \.isNewline).first(where: { $0.hasPrefix("run_id:") }) else {
            return nil
        }
        return String(line.dropFirst("run_id:".count))
    }

    /// The value after `name` in a flat `XINFO` reply.
    private static func field(_ name: String, in fields: [RedisValue]) -> RedisValue? {
        guard let index = fields.firstIndex(of: .string(name)), index + 1 < fields.count else { return nil }
        return fields[index + 1]
    }
}

/// `XAUTOCLAIM`'s reply: where the next claim would start, and the entries claimed.
public struct XAutoClaimResponse: Sendable, Equatable {
    public var next: String
    public var entries: [StreamEntry]
}

/// `XPENDING`'s summary: how many entries are pending in the group and the lowest id among them.
public struct XPendingSummary: Sendable, Equatable {
    public var count: Int
    public var lowest: StreamID?
}

/// What `XINFO STREAM` says of a stream's size.
public struct XInfoStream: Sendable, Equatable {
    /// Entries in the stream now.
    public var length: Int
    /// Entries ever added.
    public var entriesAdded: Int
}

/// One consumer group of `XINFO GROUPS`.
public struct XInfoGroup: Sendable, Equatable {
    public var name: String
    public var lastDeliveredID: String
    /// Entries delivered and not yet acknowledged.
    public var pending: Int
    /// Entries of the stream's whole history up to ``lastDeliveredID`` (`nil` when Redis cannot tell).
    public var entriesRead: Int?
    /// Entries not yet delivered to the group (`nil` when Redis cannot tell).
    public var lag: Int?
}
