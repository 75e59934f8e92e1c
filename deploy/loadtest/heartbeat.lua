-- wrk script: heartbeats from registered devices, round-robin.
--   wrk -t1 -c64 -d20s -s deploy/loadtest/heartbeat.lua http://127.0.0.1:8080 -- devices.tsv [beating] [pause_ms] [body] [refusals]
-- devices.tsv: one "<device id>\t<token>" per line (scripts/bench/register_devices.py writes it).
-- beating: how many of its first devices beat (the rest stay silent; default 0: all).
-- pause_ms: pause before each request of a connection (rate ≈ connections × 1000 / (pause + latency);
--   default 0: as fast as possible, and no pause is scheduled at all).
-- body: "short" (default; the load generator's body) or "player" (a real player's size: a UUID
--   playlist id, a version string, fractional storage; scripts/sizing/measure.py uses it).
-- refusals: "show" prints the first three bodies of each non-2xx status to stderr. Off by default:
--   wrk hands every response to Lua once a script defines response(), which cost more client CPU
--   than building the request (wrk's summary counts non-2xx responses either way).
-- Run the gateway with HEARTBEAT_MIN_INTERVAL_SECONDS=0, or most requests get 429.
--
-- The client shares the machine with what it measures, so each request costs it as little as this
-- allows: built whole once per device, split around the timestamp, which is formatted once a
-- second. wrk's user CPU per request went from 6.6–6.9 µs (the request built and the response
-- handed to Lua each time) to ~1.9 µs (a plain `GET` without a script: ~0.6 µs); with the kernel's
-- share, `make bench` measures 7.8–8.0 µs per heartbeat request against 6.6–6.9 per no-op request.
local devices = {}
local counter = 0
local statuses = {}
local fields = '","current_playlist":"p1","storage_status":{"total_gb":64,"used_gb":32},' ..
  '"network_status":"connected","player_version":"1.2.3"}'
local STAMP = "0000-00-00T00:00:00Z"  -- the timestamp's place in a request: always 20 characters
local second, stamp = -1, ""

function init(args)
  local path = args[1] or "devices.tsv"
  local limit = tonumber(args[2] or "0")
  local pause = tonumber(args[3] or "0")
  if args[4] == "player" then
    fields = '","current_playlist":"7d2f0c4e-8a7b-4c3e-9f11-2b6a5d9e0c17",' ..
      '"storage_status":{"total_gb":64,"used_gb":23.5},"network_status":"wifi","player_version":"4.12.3"}'
  end
  local file = assert(io.open(path, "r"), "cannot open " .. path)
  for line in file:lines() do
    local id, token = line:match("^(%S+)\t(%S+)$")
    if id and (limit <= 0 or #devices < limit) then
      local request = wrk.format("POST", "/api/v1/devices/" .. id .. "/heartbeat",
        { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json" },
        '{"device_id":"' .. id .. '","timestamp":"' .. STAMP .. fields)
      local at = request:find(STAMP, 1, true)
      devices[#devices + 1] = { request:sub(1, at - 1), request:sub(at + #STAMP) }
    end
  end
  file:close()
  assert(#devices > 0, "no devices in " .. path)
  -- each wrk thread starts at a different place in the list
  counter = math.random(#devices)
  -- wrk schedules every request through a timer once a script defines delay(): only when pausing
  if pause > 0 then delay = function() return pause end end
  if args[5] == "show" then
    response = function(status, headers, body)
      statuses[status] = (statuses[status] or 0) + 1
      if status ~= 200 and statuses[status] <= 3 then io.stderr:write("status " .. status .. ": " .. body .. "\n") end
    end
  end
end

function request()
  counter = counter % #devices + 1
  local now = os.time()
  if now ~= second then second, stamp = now, os.date("!%Y-%m-%dT%H:%M:%SZ", now) end
  local d = devices[counter]
  return d[1] .. stamp .. d[2]
end
