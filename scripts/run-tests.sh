#!/usr/bin/env bash
# Runs the whole test suite: unit tests (no services) and integration tests. The Redis tests start
# their own private redis-server instances; PostgreSQL and the Kafka mock come from services.sh and
# are stopped again whatever the outcome.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export HEARTBEAT_RUN_DIR=${HEARTBEAT_RUN_DIR:-$PWD/.run/test}
export REDIS_PORT=${TEST_REDIS_PORT:-6391} PG_PORT=${TEST_PG_PORT:-5441}

cleanup() {
    scripts/services.sh stop >/dev/null || true
    # Test-owned redis-servers run in hb-redis-* folders; a crashed test run can orphan them.
    for pid in $(pgrep -x redis-server || true); do
        if readlink "/proc/$pid/cwd" 2>/dev/null | grep -q '/hb-redis-'; then kill "$pid" 2>/dev/null || true; fi
    done
}
trap cleanup EXIT

scripts/services.sh start
eval "$(scripts/services.sh env)"
swift build --build-tests
# Serial: the integration tests run services with timing expectations on a two-core machine.
swift test --no-parallel "$@"
(($# == 0)) || exit 0  # a filtered run is only the tests asked for

# Every deployment file checked by the tool that consumes it (promtool test rules, amtool,
# kubernetes-validate, docker-compose config, systemd-analyze, haproxy -c, …).
scripts/check-deploy.sh

# The deployment on loopback (3 gateways behind haproxy, 2 monitors, Prometheus, Alertmanager):
# heartbeat-loadgen through haproxy while a gateway and the leader are SIGKILLed, then the audit, the
# alerts and every dashboard query (own run dir and ports, .run/deployment-test-short, ~1 min);
# `make deployment-test` is the long one.
python3 scripts/deployment.py test --short

# Both HTTP APIs fuzzed from docs/openapi.yaml (schemathesis from PyPI, test tooling only), on
# their own services under .run/fuzz; `make fuzz` is the long run.
python3 -c 'import schemathesis' 2>/dev/null || python3 -m pip install --quiet 'schemathesis>=4,<5'
python3 scripts/fuzz.py --short

# The short chaos run: heartbeat-loadgen while Redis, PostgreSQL, Kafka and the leader fail in
# turn, audited at the end (own services under .run/chaos-short); `make chaos` is the long one.
python3 scripts/chaos.py --short

# The short cluster run: heartbeat-loadgen on a real Redis Cluster (3 primaries + 3 replicas, both
# executables with REDIS_CLUSTER_NODES) while a primary is SIGKILLed and its replica promoted and a
# bucket's slot migrates; audited at the end (own services under .run/cluster-test-short, ~1 min);
# `make cluster-test` is the long one.
python3 scripts/cluster_test.py --short
