/// The reconciler's per-bucket scripts: devices PostgreSQL holds online that are missing from the
/// bucket's online set (Redis lost the write) go back on the normal path.
///
/// KEYS: the bucket's online set and transitions stream.
public enum ReconcileScript {
    /// ARGV: max stream length to scan, then pairs of device id and score (last heartbeat, ms).
    /// Adds each device that is neither in the online set nor named by a transition still in the
    /// stream (one not yet applied to PostgreSQL, which explains the difference). Reply: the ids
    /// added, or `-1` when the stream is longer than the limit (busy: try again later).
    public static let restore = RedisScript(
        name: "reconcile-restore",
        source: #"""
            if redis.call('XLEN', KEYS[2]) > tonumber(ARGV[1]) then return -1 end
            local inFlight = {}
            for _, entry in ipairs(redis.call('XRANGE', KEYS[2], '-', '+')) do
              local fields = entry[2]
              for i = 1, #fields, 2 do
                if fields[i] == 'device' then inFlight[fields[i + 1]] = true end
              end
            end
            local added = {}
            for i = 2, #ARGV, 2 do
              local id = ARGV[i]
              if not inFlight[id] and not redis.call('ZSCORE', KEYS[1], id) then
                redis.call('ZADD', KEYS[1], ARGV[i + 1], id)
                added[#added + 1] = id
              end
            end
            return added
            """#)

    /// ARGV: pairs of device id and the score ``restore`` gave it. For devices PostgreSQL turned
    /// offline while they were being restored (a transition applied between the reconciler's read
    /// and ``restore``): a member still at the restored score is removed again; one whose score
    /// moved has beaten since, and its heartbeat found it already a member, so the `online`
    /// transition it would have made is appended here. Reply: `{removed, announced}`.
    public static let undo = RedisScript(
        name: "reconcile-undo",
        source: #"""
            local t = redis.call('TIME')
            local nowText = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
            local removed, announced = 0, 0
            for i = 1, #ARGV, 2 do
              local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
              if score then
                if tonumber(score) == tonumber(ARGV[i + 1]) then
                  redis.call('ZREM', KEYS[1], ARGV[i])
                  removed = removed + 1
                else
                  redis.call('XADD', KEYS[2], '*', 'device', ARGV[i], 'type', 'online', 'at', nowText, 'last_heartbeat', score)
                  announced = announced + 1
                end
              end
            end
            return {removed, announced}
            """#)
}
