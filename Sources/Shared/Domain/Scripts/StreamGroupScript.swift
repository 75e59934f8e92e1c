/// Moving a consumer group's position by hand, for a reader that reads with `XRANGE` after the
/// group's position and keeps no pending entries (`RedisClient.advanceGroup`).
///
/// KEYS: the stream.
public enum StreamGroupScript {
    /// ARGV: group, the position the batch was read after, the new position (the batch's last id),
    /// the batch's length, the trim bound (the id after the new position).
    ///
    /// Moves the group and trims what it passed only if the group is still where the batch was read
    /// from and holds no pending entry: an instance that lost the leader lock and does not know it
    /// yet can then neither move the group past entries the leader has not stored nor trim them, nor
    /// trim entries an instance of an earlier version read and has not acknowledged. The group's
    /// count of entries read goes up by the batch's length (as `XREADGROUP` would count them); a
    /// group that has no count yet (made at `0`, never read) gets it from its lag. Reply: `1` moved,
    /// `0` left as it was.
    public static let advance = RedisScript(
        name: "stream-group-advance",
        source: #"""
            for _, fields in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
              local group = {}
              for i = 1, #fields, 2 do group[fields[i]] = fields[i + 1] end
              if group['name'] == ARGV[1] then
                if group['last-delivered-id'] ~= ARGV[2] or group['pending'] ~= 0 then return 0 end
                local read = group['entries-read']
                if not read and group['lag'] then
                  local stream = redis.call('XINFO', 'STREAM', KEYS[1])
                  for i = 1, #stream, 2 do
                    if stream[i] == 'entries-added' then read = stream[i + 1] - group['lag'] end
                  end
                end
                read = read and read + tonumber(ARGV[4]) or -1
                redis.call('XGROUP', 'SETID', KEYS[1], ARGV[1], ARGV[3], 'ENTRIESREAD', read)
                redis.call('XTRIM', KEYS[1], 'MINID', ARGV[5])
                return 1
              end
            end
            return 0
            """#)
}
