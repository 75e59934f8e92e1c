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
bin=$(swift build --show-bin-path)

if [[ -f $RUN/ingest.pid ]] && kill -0 "$(cat "$RUN/ingest.pid")" 2>/dev/null; then
    echo "run-local: heartbeat-ingest already running (pid $(cat "$RUN/ingest.pid"))"
else
    HTTP_HOST=127.0.0.1 HTTP_PORT=$HTTP_PORT REDIS_URL=$REDIS_URL nohup "$bin/heartbeat-ingest" >"$RUN/ingest.log" 2>&1 &
    echo $! >"$RUN/ingest.pid"
    for _ in $(seq 50); do
        curl -fsS "http://127.0.0.1:$HTTP_PORT/readyz" >/dev/null 2>&1 && break
        sleep 0.2
    done
    curl -fsS "http://127.0.0.1:$HTTP_PORT/readyz" >/dev/null || { tail -20 "$RUN/ingest.log"; exit 1; }
    echo "run-local: heartbeat-ingest listening on 127.0.0.1:$HTTP_PORT (log: $RUN/ingest.log)"
fi

eval "$(scripts/register-demo-device.sh)"
cat <<EOT

Demo device registered: $DEMO_DEVICE_ID

Send a heartbeat:
  curl -sS -X POST http://127.0.0.1:$HTTP_PORT/api/v1/devices/$DEMO_DEVICE_ID/heartbeat \\
    -H 'Authorization: Bearer $DEMO_DEVICE_TOKEN' -H 'Content-Type: application/json' \\
    -d '{"device_id":"$DEMO_DEVICE_ID","timestamp":"$(date -u +%Y-%m-%dT%H:%M:%SZ)","current_playlist":"demo-playlist","storage_status":{"total_gb":64,"used_gb":32},"network_status":"connected","player_version":"1.2.3"}'

Metrics: curl -sS http://127.0.0.1:$HTTP_PORT/metrics
Stop everything: make stop
EOT
