#!/usr/bin/env bash
# Brings the system up locally in the background: private Redis, PostgreSQL and Kafka mock,
# the gateway, and a registered demo device; prints how to send a heartbeat. `make stop` ends it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RUN=${HEARTBEAT_RUN_DIR:-$PWD/.run}
export HEARTBEAT_RUN_DIR=$RUN
HTTP_PORT=${HTTP_PORT:-8080}

scripts/services.sh start
eval "$(scripts/services.sh env)"
swift build --product heartbeat-ingest
swift build --product heartbeat-monitor
bin=$(swift build --show-bin-path)
ADMIN_PORT=${ADMIN_PORT:-8081}
if [[ ! -s $RUN/admin-token ]]; then head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' >"$RUN/admin-token"; fi
ADMIN_TOKEN=$(cat "$RUN/admin-token")

# start NAME PORT ENV...: runs .build/…/NAME in the background unless it already runs, waits for /readyz
start() {
    local name=$1 port=$2
    shift 2
    if [[ -f $RUN/$name.pid ]] && kill -0 "$(cat "$RUN/$name.pid")" 2>/dev/null; then
        echo "run-local: $name already running (pid $(cat "$RUN/$name.pid"))"
        return
    fi
    env "$@" nohup "$bin/$name" >"$RUN/$name.log" 2>&1 &
    echo $! >"$RUN/$name.pid"
    for _ in $(seq 100); do
        curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
        sleep 0.2
    done
    curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null || { tail -20 "$RUN/$name.log"; exit 1; }
    echo "run-local: $name listening on 127.0.0.1:$port (log: $RUN/$name.log)"
}

start heartbeat-monitor "$ADMIN_PORT" REDIS_URL="$REDIS_URL" POSTGRES_URL="$POSTGRES_URL" KAFKA_BROKERS="$KAFKA_BROKERS" \
    ADMIN_HOST=127.0.0.1 ADMIN_PORT="$ADMIN_PORT" ADMIN_TOKEN="$ADMIN_TOKEN"
start heartbeat-ingest "$HTTP_PORT" HTTP_HOST=127.0.0.1 HTTP_PORT="$HTTP_PORT" REDIS_URL="$REDIS_URL"

# Register the demo device through the ops API (PostgreSQL is the registry; Redis gets its copy).
reply=$(curl -fsS -X POST "http://127.0.0.1:$ADMIN_PORT/api/v1/devices" -H "Authorization: Bearer $ADMIN_TOKEN" \
    -H 'Content-Type: application/json' -d '{"name":"demo player"}')
DEMO_DEVICE_ID=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' <<<"$reply")
DEMO_DEVICE_TOKEN=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])' <<<"$reply")
DEMO_PLAYLIST=$(cat /proc/sys/kernel/random/uuid)
curl -fsS -X PUT "http://127.0.0.1:$ADMIN_PORT/api/v1/devices/$DEMO_DEVICE_ID/playlist" -H "Authorization: Bearer $ADMIN_TOKEN" \
    -H 'Content-Type: application/json' -d "{\"playlist_id\":\"$DEMO_PLAYLIST\"}" >/dev/null
cat <<EOT

Demo device registered: $DEMO_DEVICE_ID

Send a heartbeat:
  curl -sS -X POST http://127.0.0.1:$HTTP_PORT/api/v1/devices/$DEMO_DEVICE_ID/heartbeat \\
    -H 'Authorization: Bearer $DEMO_DEVICE_TOKEN' -H 'Content-Type: application/json' \\
    -d '{"device_id":"$DEMO_DEVICE_ID","timestamp":"$(date -u +%Y-%m-%dT%H:%M:%SZ)","current_playlist":"$DEMO_PLAYLIST","storage_status":{"total_gb":64,"used_gb":32},"network_status":"connected","player_version":"1.2.3"}'

Read its status (ops API):
  curl -sS http://127.0.0.1:$ADMIN_PORT/api/v1/devices/$DEMO_DEVICE_ID -H 'Authorization: Bearer $ADMIN_TOKEN'
Queue a command for its next heartbeat:
  curl -sS -X POST http://127.0.0.1:$ADMIN_PORT/api/v1/devices/$DEMO_DEVICE_ID/commands -H 'Authorization: Bearer $ADMIN_TOKEN' \
    -H 'Content-Type: application/json' -d '{"type":"screenshot","payload":{},"ttl_seconds":600}'

Events on Kafka:  kcat -b $KAFKA_BROKERS -G demo-\$\$ -X auto.offset.reset=earliest -e device.online device.offline
Monitor readiness (leader, storm hold):  curl -sS http://127.0.0.1:$ADMIN_PORT/readyz
Metrics: curl -sS http://127.0.0.1:$HTTP_PORT/metrics   curl -sS http://127.0.0.1:$ADMIN_PORT/metrics
Admin token (ops API): $RUN/admin-token  — API reference: docs/openapi.yaml
Stop everything: make stop
EOT
