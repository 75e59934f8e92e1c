-- wrk script: heartbeats from registered devices, round-robin.
--   wrk -t1 -c64 -d20s -s deploy/loadtest/heartbeat.lua http://127.0.0.1:8080 -- devices.tsv
-- devices.tsv: one "<device id>\t<token>" per line (scripts/bench/register_devices.py writes it).
-- Run the gateway with HEARTBEAT_MIN_INTERVAL_SECONDS=0, or most requests get 429.
local devices = {}
local counter = 0
local statuses = {}

function init(args)
  local path = args[1] or "devices.tsv"
  local file = assert(io.open(path, "r"), "cannot open " .. path)
  for line in file:lines() do
    local id, token = line:match("^(%S+)\t(%S+)$")
    if id then devices[#devices + 1] = { id = id, token = token } end
  end
  file:close()
  assert(#devices > 0, "no devices in " .. path)
  -- each wrk thread starts at a different place in the list
  counter = math.random(#devices)
end

function request()
  counter = counter % #devices + 1
  local d = devices[counter]
  local body = '{"device_id":"' .. d.id .. '","timestamp":"' .. os.date("!%Y-%m-%dT%H:%M:%SZ") ..
    '","current_playlist":"p1","storage_status":{"total_gb":64,"used_gb":32},' ..
    '"network_status":"connected","player_version":"1.2.3"}'
  return wrk.format("POST", "/api/v1/devices/" .. d.id .. "/heartbeat",
    { ["Authorization"] = "Bearer " .. d.token, ["Content-Type"] = "application/json" }, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status ~= 200 and (statuses[status] or 0) <= 3 then io.stderr:write("status " .. status .. ": " .. body .. "\n") end
end
