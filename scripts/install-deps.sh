#!/usr/bin/env bash
# Install the Debian packages the heartbeat services, their C modules and the
# dev scripts need. Only missing packages are installed; `apt-get update` runs
# once, and only if something is missing. Uses sudo only when not root.
set -euo pipefail

PACKAGES=(
    redis-server    # private Redis instances (scripts/services.sh)
    postgresql      # initdb, pg_ctl, postgres, psql
    libhiredis-dev  # Redis C client (Swift C module)
    libpq-dev       # PostgreSQL C client (Swift C module)
    librdkafka-dev  # Kafka C client and its mock cluster (tools/kafka-mock)
    pkg-config
    wrk             # HTTP load generator
    nginx-light     # baseline for throughput comparisons
    kcat            # Kafka command line client
    prometheus      # promtool: checks and unit-tests deploy/prometheus (scripts/check-deploy.sh)
    prometheus-alertmanager  # amtool: checks deploy/alertmanager/alertmanager.yml
    haproxy         # haproxy -c: checks deploy/haproxy/haproxy.cfg
    systemd         # systemd-analyze verify/security: checks deploy/systemd units
)

installed() {
    [[ $(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null) == installed ]]
}

missing=()
for pkg in "${PACKAGES[@]}"; do
    installed "$pkg" || missing+=("$pkg")
done

if ((${#missing[@]} == 0)); then
    echo "install-deps.sh: all packages present: ${PACKAGES[*]}"
    exit 0
fi

SUDO=()
if ((EUID != 0)); then
    command -v sudo >/dev/null 2>&1 || {
        echo "install-deps.sh: error: not root and no sudo; install as root: apt-get install -y ${missing[*]}" >&2
        exit 1
    }
    SUDO=(sudo env DEBIAN_FRONTEND=noninteractive)  # sudo resets the environment
fi

echo "install-deps.sh: installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update
"${SUDO[@]}" apt-get install -y "${missing[@]}"
