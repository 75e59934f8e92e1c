/// The one script a heartbeat costs.
///
/// KEYS: online set, device hash, command list, transitions stream, history stream, registry
/// marker, command log (one bucket).
/// ARGV: device id, token SHA-256 (64 hex), payload (``HeartbeatPayload/storedForm``), minimum
/// interval (ms, 0 = none), history stream cap, acknowledged command ids (space-separated, may be
/// empty).
///
/// The hash keeps the first 32 hex digits (128 bits) of the token's SHA-256
/// (``DeviceToken/redisDigest(ofHash:)``).
///
/// Reply: `{0, time_s, time_us, assigned_playlist, command…}` when recorded;
/// `{1}` unknown device; `{2}` wrong token; `{3, time_s, time_us, retry_after_ms}` too frequent;
/// `{4}` device not found while the bucket's registry marker is missing (Redis lost its data and
/// the monitor has not re-seeded it yet: the device may well be registered).
///
/// Liveness uses Redis `TIME` only; the 429 check compares it with the hash's `last_heartbeat`.
/// A device absent from the online set (`ZADD` adds it) gets an `online` transition appended in
/// the same atomic step that re-adds it, so the offline scanner (which
/// removes members and appends `offline` atomically) and heartbeats can never lose a transition.
///
/// Commands are `"<expiry ms>|<json>"` with the command id first in the JSON. Delivery is at least
/// once: every unexpired, unacknowledged command is in every reply; an acknowledged or expired one
/// leaves the list. The command log (``CommandState``) counts deliveries. A device whose list was
/// found empty gets the hash field `n` (``KeySchema/DeviceField/noCommands``) and its list is not
/// read again until queuing a command removes the field (``DeviceRegistryCache/boundedPush``):
/// a device without commands pays no `LRANGE` (one `redis.call` of six, ~10% of the script's time).
/// Monitors go first in an upgrade: a command queued by one that does not remove `n` would wait
/// for the next one queued after it.
public enum HeartbeatScript {
    public enum Status: Int64, Sendable {
        case recorded = 0
        case unknownDevice = 1
        case wrongToken = 2
        case tooFrequent = 3
        case registryNotLoaded = 4
    }

    public static let script = RedisScript(
        name: "heartbeat",
        source: #"""
            local dev = redis.call('HMGET', KEYS[2], 'token', 'playlist', 'last_heartbeat', 'n')
            local stored = dev[1]
            if not stored then
              if KEYS[6] and redis.call('EXISTS', KEYS[6]) == 0 then return {4} end
              return {1}
            end
            if string.sub(ARGV[2], 1, 32) ~= stored then return {2} end
            local t = redis.call('TIME')
            local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
            local nowText = string.format('%d', now)
            local minInterval = tonumber(ARGV[4])
            if dev[3] and minInterval > 0 then
              local elapsed = now - tonumber(dev[3])
              if elapsed < minInterval then return {3, t[1], t[2], string.format('%d', minInterval - elapsed)} end
            end
            local added = redis.call('ZADD', KEYS[1], nowText, ARGV[1])
            redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[5], '*', 'd', ARGV[1], 't', nowText, 'p', ARGV[3])
            if added == 1 then
              redis.call('XADD', KEYS[4], '*', 'device', ARGV[1], 'type', 'online', 'at', nowText, 'last_heartbeat', nowText)
            end
            local reply = {0, t[1], t[2], dev[2] or ''}
            local pending = false
            if not dev[4] then pending = redis.call('LRANGE', KEYS[3], 0, -1) end
            if pending and #pending == 0 then
              redis.call('HSET', KEYS[2], 'last_heartbeat', nowText, 'payload', ARGV[3], 'n', '1')
            else
              redis.call('HSET', KEYS[2], 'last_heartbeat', nowText, 'payload', ARGV[3])
            end
            if pending and #pending > 0 then
              local acked = {}
              for id in string.gmatch(ARGV[6] or '', '%S+') do acked[id] = true end
              local keep = {}
              for _, entry in ipairs(pending) do
                local bar = string.find(entry, '|', 1, true)
                local expiry = bar and tonumber(string.sub(entry, 1, bar - 1)) or 0
                local json = bar and string.sub(entry, bar + 1) or ''
                local id = string.match(json, '^{"id":"([^"]+)"') or ''
                local log = KEYS[7] and id ~= '' and redis.call('HGET', KEYS[7], id)
                local state, count, last, rest = 'queued', 0, 0, ''
                if log then
                  local s, n, l, r = string.match(log, '^(%a+)|(%d+)|(%d+)|%d+|(.*)$')
                  if s then state, count, last, rest = s, tonumber(n), tonumber(l), r end
                end
                if expiry <= now then
                  if log then redis.call('HSET', KEYS[7], id, 'expired|' .. count .. '|' .. last .. '|' .. nowText .. '|' .. rest) end
                elseif acked[id] then
                  if log then redis.call('HSET', KEYS[7], id, 'acknowledged|' .. count .. '|' .. last .. '|' .. nowText .. '|' .. rest) end
                else
                  keep[#keep + 1] = entry
                  reply[#reply + 1] = json
                  if log then redis.call('HSET', KEYS[7], id, 'delivered|' .. (count + 1) .. '|' .. nowText .. '|0|' .. rest) end
                end
              end
              if #keep < #pending then
                redis.call('DEL', KEYS[3])
                if #keep > 0 then redis.call('RPUSH', KEYS[3], unpack(keep)) end
              end
            end
            return reply
            """#)
}
