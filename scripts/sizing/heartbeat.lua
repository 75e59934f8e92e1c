-- wrk script of scripts/sizing/measure.py: paced heartbeats from registered devices, round-robin,
-- with a body the size of a real player's (playlist id a UUID, a version string, storage in GB).
--   wrk -t1 -c8 -d120s -s scripts/sizing/heartbeat.lua http://127.0.0.1:18480 -- devices.tsv 9000 15
-- Arguments: devices file ("<id>\t<token>" lines), how many of its first devices beat (the rest stay
-- silent), and the pause in ms before each request of a connection (rate ≈ connections × 1000 /
-- (pause + latency)).
local devices = {}
local counter = 0
local pause = 0
local statuses = {}

function init(args)
  local path = args[1] or "devices.tsv"
  local limit = tonumber(args[2] or "0")
  pause = tonumber(args[3] or "0")
  local file = assert(io.open(path, "r"), "cannot open " .. path)
  for line in file:lines() do
    local id, token = line:match("^(%S+)\t(%S+)$")
    if id and (limit <= 0 or #devices < limit) then devices[#devices + 1] = { id = id, token = token } end
  end
  file:close()
  assert(#devices > 0, "no devices in " .. path)
  counter = math.random(#devices)
end

function delay()
  return pause
end

function request()
  counter = counter % #devices + 1
  local d = devices[counter]
  local body = '{"device_id":"' .. d.id .. '","timestamp":"' .. os.date("!%Y-%m-%dT%H:%M:%SZ") ..
    '","current_playlist":"7d2f0c4e-8a7b-4c3e-9f11-2b6a5d9e0c17",' ..
    '"storage_status":{"total_gb":64,"used_gb":23.5},"network_status":"wifi","player_version":"4.12.3"}'
  return wrk.format("POST", "/api/v1/devices/" .. d.id .. "/heartbeat",
    { ["Authorization"] = "Bearer " .. d.token, ["Content-Type"] = "application/json" }, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status ~= 200 and statuses[status] <= 3 then io.stderr:write("status " .. status .. ": " .. body .. "\n") end
end
