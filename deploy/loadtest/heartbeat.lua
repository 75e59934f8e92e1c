-- wrk script: heartbeats from registered devices, round-robin.
--   wrk -t1 -c64 -d20s -s deploy/loadtest/heartbeat.lua http://127.0.0.1:8080 -- devices.tsv [beating] [pause_ms] [body]
-- devices.tsv: one "<device id>\t<token>" per line (scripts/bench/register_devices.py writes it).
-- beating: how many of its first devices beat (the rest stay silent; default 0: all).
-- pause_ms: pause before each request of a connection (rate ≈ connections × 1000 / (pause + latency);
--   default 0: as fast as possible, and no pause is scheduled at all).
-- body: "short" (default; the load generator's body) or "player" (a real player's size: a UUID
--   playlist id, a version string, fractional storage; scripts/sizing/measure.py uses it).
-- Run the gateway with HEARTBEAT_MIN_INTERVAL_SECONDS=0, or most requests get 429.
local devices = {}
local counter = 0
local statuses = {}
local fields = '","current_playlist":"p1","storage_status":{"total_gb":64,"used_gb":32},' ..
  '"network_status":"connected","player_version":"1.2.3"}'

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
    if id and (limit <= 0 or #devices < limit) then devices[#devices + 1] = { id = id, token = token } end
  end
  file:close()
  assert(#devices > 0, "no devices in " .. path)
  -- each wrk thread starts at a different place in the list
  counter = math.random(#devices)
  -- wrk schedules every request through a timer once a script defines delay(): only when pausing
  if pause > 0 then delay = function() return pause end end
end

function request()
  counter = counter % #devices + 1
  local d = devices[counter]
  local body = '{"device_id":"' .. d.id .. '","timestamp":"' .. os.date("!%Y-%m-%dT%H:%M:%SZ") .. fields
  return wrk.format("POST", "/api/v1/devices/" .. d.id .. "/heartbeat",
    { ["Authorization"] = "Bearer " .. d.token, ["Content-Type"] = "application/json" }, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status ~= 200 and statuses[status] <= 3 then io.stderr:write("status " .. status .. ": " .. body .. "\n") end
end
