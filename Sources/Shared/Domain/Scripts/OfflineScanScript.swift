/// The offline scanner's per-bucket scripts. Liveness uses Redis `TIME` only.
///
/// KEYS: the bucket's online set and transitions stream.
public enum OfflineScanScript {
    /// ARGV: offline-after (ms). Reply: `{stale, online, now_ms}`: members older than the cutoff,
    /// all members, Redis time. O(log n): a quiet fleet costs nothing to scan.
    public static let count = RedisScript(
        name: "offline-count",
        source: #"""
            local t = redis.call('TIME')
            local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
            local cutoff = string.format('%d', now - tonumber(ARGV[1]))
            return {redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. cutoff), redis.call('ZCARD', KEYS[1]), string.format('%d', now)}
            """#)

    /// ARGV: cutoff (ms, Redis time: members scored before it are stale), batch limit. Atomically
    /// removes up to `limit` stale members and appends an `offline` transition for each
    /// (last_heartbeat = its score). The cutoff comes from the ``count`` call, so devices that turn
    /// stale between the count and the apply wait for the next scan (and its storm check).
    /// Reply: `{moved, still_stale}`. A heartbeat racing with it lands either before (the member is
    /// fresh and not taken) or after (it is re-added with an `online` transition).
    public static let apply = RedisScript(
        name: "offline-apply",
        source: #"""
            local t = redis.call('TIME')
            local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
            local nowText = string.format('%d', now)
            local cutoff = '(' .. ARGV[1]
            local stale = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff, 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
            local moved = 0
            for i = 1, #stale, 2 do
              redis.call('ZREM', KEYS[1], stale[i])
              redis.call('XADD', KEYS[2], '*', 'device', stale[i], 'type', 'offline', 'at', nowText, 'last_heartbeat', stale[i + 1])
              moved = moved + 1
            end
            return {moved, redis.call('ZCOUNT', KEYS[1], '-inf', cutoff)}
            """#)
}
