#!/usr/bin/env bash
# Validate every deployment file under deploy/ with the tool that consumes it, one line per
# check; exit 1 if any fails (each failure's output is shown under its line).
#
# Usage: scripts/check-deploy.sh [--rootfs]
#   --rootfs  also build a minimal Debian bookworm root file system (debootstrap, a few minutes,
#             needs the Debian mirror), install deploy/container/runtime-packages.txt in it and
#             run the built executables there (--version): proof that the runtime image's
#             packages are enough. Needs .build/release (or .build/debug) executables, and root.
#
# Missing tools are installed first: Debian packages with apt-get (prometheus → promtool,
# prometheus-alertmanager → amtool, haproxy, systemd → systemd-analyze, binutils → readelf,
# debootstrap for --rootfs), Python tools with pip into virtualenvs (yamllint,
# kubernetes-validate, dockerfile = BuildKit's Dockerfile parser; docker-compose in one of its
# own) under $HEARTBEAT_DEPLOY_TOOLS (default ~/.cache/heartbeat-deploy-tools). Tools already on
# PATH are used as they are.
# Once the tools are there the checks take well under a minute.
set -uo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
cd "$REPO" || exit 1

ROOTFS=no
for arg in "$@"; do
    case $arg in
        --rootfs) ROOTFS=yes ;;
        -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "check-deploy.sh: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

# Kubernetes versions the manifests are validated against (schemas shipped by
# kubernetes-validate): the oldest supported here and a recent one.
K8S_VERSIONS=(1.30.0 1.34.0)
TOOLS_DIR=${HEARTBEAT_DEPLOY_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/heartbeat-deploy-tools}
VENV=$TOOLS_DIR/venv
COMPOSE_VENV=$TOOLS_DIR/compose-venv

say() { echo "check-deploy.sh: $*"; }
die() { echo "check-deploy.sh: error: $*" >&2; exit 1; }

# ---------------------------------------------------------------- tools

SUDO=()
if ((EUID != 0)); then SUDO=(sudo env DEBIAN_FRONTEND=noninteractive); fi

apt_missing=()
need_apt() { # need_apt COMMAND PACKAGE
    command -v "$1" >/dev/null 2>&1 || apt_missing+=("$2")
}
need_apt promtool prometheus
need_apt amtool prometheus-alertmanager
need_apt haproxy haproxy
need_apt systemd-analyze systemd
need_apt readelf binutils
[[ $ROOTFS == yes ]] && need_apt debootstrap debootstrap
# the virtualenv for the Python tools (Debian's python3 has venv in a package of its own)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || apt_missing+=(python3-venv)
if ((${#apt_missing[@]} > 0)); then
    say "installing Debian packages: ${apt_missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    { "${SUDO[@]}" apt-get update -qq && "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${apt_missing[@]}"; } >/dev/null ||
        die "apt-get install ${apt_missing[*]} failed"
fi

# A Python tool: on PATH, else in one of our virtualenvs.
tool() {
    if command -v "$1" >/dev/null 2>&1; then command -v "$1"
    elif [[ -x $VENV/bin/$1 ]]; then echo "$VENV/bin/$1"
    elif [[ -x $COMPOSE_VENV/bin/$1 ]]; then echo "$COMPOSE_VENV/bin/$1"
    fi
}
# The Python that runs scripts/deploy_lint.py needs PyYAML and `dockerfile`.
lint_python() {
    local py
    for py in python3 "$VENV/bin/python"; do
        if "$py" -c 'import yaml, dockerfile' >/dev/null 2>&1; then command -v "$py"; return; fi
    done
}
new_venv() { # new_venv DIR: a virtualenv with a current pip
    [[ -x $1/bin/python ]] && return 0
    mkdir -p "$TOOLS_DIR" && python3 -m venv "$1" &&
        "$1/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip setuptools wheel
}
pip_install() { # pip_install VENV PACKAGE...
    local venv=$1
    shift
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "$@"
}

pip_missing=()
[[ -n $(tool yamllint) ]] || pip_missing+=(yamllint)
[[ -n $(tool kubernetes-validate) ]] || pip_missing+=(kubernetes-validate)
[[ -n $(lint_python) ]] || pip_missing+=(dockerfile pyyaml)
if ((${#pip_missing[@]} > 0)); then
    say "installing Python tools into $VENV: ${pip_missing[*]}"
    { new_venv "$VENV" && pip_install "$VENV" "${pip_missing[@]}"; } || die "pip install ${pip_missing[*]} failed"
fi
# docker-compose 1.29 (the Python one) gets a virtualenv of its own: it pins jsonschema < 4
# (kubernetes-validate needs ≥ 4) and PyYAML < 6, which has no wheel for Python 3.11 and whose
# shipped C code predates 3.11: build PyYAML first, regenerating that code with Cython < 3.
if [[ -z $(tool docker-compose) ]]; then
    say "installing docker-compose into $COMPOSE_VENV"
    {
        new_venv "$COMPOSE_VENV" &&
            pip_install "$COMPOSE_VENV" 'cython<3' &&
            PYYAML_FORCE_CYTHON=1 pip_install "$COMPOSE_VENV" --no-build-isolation 'PyYAML==5.4.1' &&
            pip_install "$COMPOSE_VENV" 'docker-compose==1.29.2'
    } || die "pip install docker-compose failed"
fi
YAMLLINT=$(tool yamllint)
KUBEVAL=$(tool kubernetes-validate)
COMPOSE=$(tool docker-compose)
LINTPY=$(lint_python)
[[ -n $YAMLLINT && -n $KUBEVAL && -n $COMPOSE && -n $LINTPY ]] || die "Python tools still missing after pip install"

# ---------------------------------------------------------------- checks

WORK=$(mktemp -d "${TMPDIR:-/tmp}/check-deploy.XXXXXX")
MOUNTED=
cleanup() {
    if [[ -n $MOUNTED ]]; then umount "$MOUNTED" || return; fi
    rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT
failures=0
checks=0

# check NAME COMMAND...: run, print one line, show the output on failure.
check() {
    local name=$1 out=$WORK/out start rc tenths
    shift
    checks=$((checks + 1))
    start=${EPOCHREALTIME//[.,]/}
    "$@" >"$out" 2>&1
    rc=$?
    tenths=$(((${EPOCHREALTIME//[.,]/} - start) / 100000))
    if ((rc == 0)); then
        printf 'ok    %-58s %3d.%d s\n' "$name" $((tenths / 10)) $((tenths % 10))
    else
        failures=$((failures + 1))
        printf 'FAIL  %s (exit %d)\n' "$name" "$rc"
        sed 's/^/      /' "$out"
    fi
}

# -- Prometheus
check "promtool check config (prometheus.yml, targets/)" promtool check config deploy/prometheus/prometheus.yml
check "promtool check rules (rules.yml)" promtool check rules deploy/prometheus/rules.yml
check "promtool test rules (rules.test.yml)" promtool test rules deploy/prometheus/rules.test.yml
check "alerts: severity, annotations, runbook anchors, tests" "$LINTPY" scripts/deploy_lint.py alerts

# -- Grafana: structure, and every query parsed by Prometheus' own parser (as recording rules)
dashboard_rules() {
    "$LINTPY" scripts/dashboard_queries.py >"$WORK/queries.txt" || return 1
    "$LINTPY" - "$WORK/queries.txt" >"$WORK/dashboard-rules.yml" <<'PY' || return 1
import json, sys
queries = [q for q in open(sys.argv[1]).read().splitlines() if q.strip()]
print("groups:\n  - name: dashboard\n    rules:")
for i, q in enumerate(queries):
    print(f"      - record: dashboard:query_{i}\n        expr: {json.dumps(q)}")
PY
    echo "$(wc -l <"$WORK/queries.txt") queries"
    promtool check rules "$WORK/dashboard-rules.yml"
}
check "grafana dashboard: structure and datasource variable" "$LINTPY" scripts/dashboard_queries.py --lint
check "grafana dashboard: every query parses (promtool)" dashboard_rules

# -- Alertmanager
check "amtool check-config (alertmanager.yml)" amtool check-config deploy/alertmanager/alertmanager.yml
alert_routes() {
    local config=deploy/alertmanager/alertmanager.yml receivers labels
    while IFS='|' read -r receivers labels; do
        # shellcheck disable=SC2086 # labels are words
        amtool config routes test --config.file="$config" --verify.receivers="$receivers" $labels || return 1
    done <<'EOF'
slack-devices|alertname=DeviceOffline device_id=6b1f0a5e-0000-4000-8000-000000000001 device_name=lobby severity=warning
pagerduty,slack-ops|alertname=FleetMassOffline severity=critical
pagerduty,slack-ops|alertname=MonitorNoLeader severity=critical
slack-ops|alertname=MonitorApplyErrors severity=warning
default-webhook|alertname=MonitorLeaderChanged severity=info
EOF
}
check "amtool config routes test (severity and device routes)" alert_routes

# -- YAML style (settings in .yamllint)
check "yamllint deploy/ (.yamllint)" "$YAMLLINT" -s deploy .yamllint

# -- HAProxy (gateway names resolve only inside Docker: that warning is expected)
haproxy_check() {
    haproxy -c -f deploy/haproxy/haproxy.cfg >"$WORK/haproxy.out" 2>&1 || { cat "$WORK/haproxy.out"; return 1; }
    if grep -E '\[(WARNING|ALERT)\]' "$WORK/haproxy.out" | grep -v 'could not resolve address'; then return 1; fi
    grep -q 'Configuration file is valid' "$WORK/haproxy.out"
}
check "haproxy -c (haproxy.cfg)" haproxy_check

# -- Kubernetes
for version in "${K8S_VERSIONS[@]}"; do
    check "kubernetes-validate --strict -k $version (k8s/*.yaml)" \
        "$KUBEVAL" --strict --quiet -k "$version" deploy/k8s/*.yaml
done

# -- Compose (no Docker engine needed for `config`)
compose_check() {
    "$COMPOSE" -f deploy/compose/compose.yaml config >"$WORK/compose.yaml" || return 1
    "$COMPOSE" --env-file deploy/compose/.env.example -f deploy/compose/compose.yaml config -q || return 1
    "$LINTPY" scripts/deploy_lint.py compose "$WORK/compose.yaml"
}
check "docker-compose config (compose.yaml, .env.example, mounts)" compose_check

# -- systemd: verify in a scratch root holding the system's unit files, our units, and
# stand-ins at /usr/local/bin for the executables (verify requires ExecStart= to exist; a
# stand-in is enough, nothing is run). Any message from verify fails the check.
systemd_root() {
    local root=$WORK/sysroot units
    units=$(dirname "$(systemctl show -P FragmentPath sysinit.target 2>/dev/null || true)")
    for units in "$units" /usr/lib/systemd/system /lib/systemd/system; do
        [[ -f $units/sysinit.target ]] && break
    done
    [[ -f $units/sysinit.target ]] || { echo "no systemd unit directory with sysinit.target"; return 1; }
    mkdir -p "$root/usr/lib/systemd" "$root/etc/systemd/system" "$root/usr/local/bin"
    cp -a "$units" "$root/usr/lib/systemd/system"
    cp deploy/systemd/*.service "$root/etc/systemd/system/"
    for exe in heartbeat-ingest heartbeat-monitor; do
        printf '#!/bin/sh\nexit 0\n' >"$root/usr/local/bin/$exe"
        chmod 755 "$root/usr/local/bin/$exe"
    done
    echo "$root"
}
systemd_verify() {
    local root
    root=$(systemd_root) || { echo "$root"; return 1; }
    systemd-analyze verify --root="$root" --man=no heartbeat-ingest.service heartbeat-monitor.service \
        >"$WORK/verify.out" 2>&1
    local rc=$?
    cat "$WORK/verify.out"
    ((rc == 0)) && [[ ! -s $WORK/verify.out ]]
}
systemd_security() {
    local root unit
    root=$(systemd_root) || { echo "$root"; return 1; }
    for unit in heartbeat-ingest heartbeat-monitor; do
        # exposure level above 2.0 (of 10) fails
        systemd-analyze security --offline=yes --root="$root" --threshold=20 "$unit.service" | tail -n 1 || return 1
    done
    # the sysusers.d entry, as installed (configuration paths are relative to --root)
    mkdir -p "$root/etc/sysusers.d"
    cp deploy/systemd/heartbeat.sysusers.conf "$root/etc/sysusers.d/heartbeat.conf"
    systemd-sysusers --dry-run --root="$root" >"$WORK/sysusers.out" 2>&1
    local rc=$?
    cat "$WORK/sysusers.out"
    ((rc == 0)) && grep -q "Creating user 'heartbeat'" "$WORK/sysusers.out" && ! grep -qi 'ignoring' "$WORK/sysusers.out"
}
check "systemd-analyze verify (systemd/*.service)" systemd_verify
check "systemd-analyze security <= 2.0, sysusers.d entry" systemd_security

# -- Container image
check "Dockerfile parses; matches runtime-packages.txt" "$LINTPY" scripts/deploy_lint.py dockerfile
# The C libraries the executables load must come from the runtime packages or from the base
# of debian:bookworm-slim (libc6, libgcc-s1, libstdc++6, zlib1g: dependencies of dpkg and apt).
# Read from the executables built under .build/.
BASE_PACKAGES=" libc6 libgcc-s1 libstdc++6 zlib1g "
runtime_libraries() {
    local exe lib path pkg allowed found=0
    allowed=" $("$LINTPY" scripts/deploy_lint.py runtime-packages | tr '\n' ' ') "
    for exe in .build/release/heartbeat-ingest .build/release/heartbeat-monitor \
        .build/debug/heartbeat-ingest .build/debug/heartbeat-monitor; do
        [[ -x $exe ]] || continue
        found=1
        for lib in $(readelf -d "$exe" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
            case $lib in
                # the Swift runtime: linked statically into the image's executables
                libswift* | libFoundation* | lib_Foundation* | libdispatch* | libBlocksRuntime*) continue ;;
                ld-linux*) continue ;; # the dynamic loader (libc6)
            esac
            path=$(ldd "$exe" | awk -v l="$lib" '$1 == l { print $3 }')
            [[ -n $path ]] || { echo "$exe: $lib not found on this machine"; return 1; }
            pkg=$(dpkg -S "$(readlink -f "$path")" 2>/dev/null | head -n1 | cut -d: -f1)
            [[ -n $pkg ]] || pkg=$(dpkg -S "$path" 2>/dev/null | head -n1 | cut -d: -f1)
            if [[ $allowed == *" $pkg "* ]]; then
                echo "$exe: $lib ← $pkg"
            elif [[ $BASE_PACKAGES == *" $pkg "* ]]; then
                echo "$exe: $lib ← $pkg (in debian:bookworm-slim)"
            else
                echo "$exe needs $lib from package '${pkg:-?}', not in deploy/container/runtime-packages.txt"
                return 1
            fi
        done
    done
    ((found)) || echo "no built executable under .build/: skipped"
}
check "runtime packages provide the executables' C libraries" runtime_libraries

# -- Settings named in the deployment files exist
check "settings in env files, ConfigMaps, compose are documented" "$LINTPY" scripts/deploy_lint.py settings

# -- Optional: the runtime package list in a fresh bookworm root file system

# Starts a private redis-server, registers one device in it as the monitor would, runs the
# gateway inside the root and sends it one heartbeat: 200 with the server time, or the check fails.
rootfs_heartbeat() {
    local root=$1 port http rc=1 reply
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    http=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
        --dir "$WORK" --pidfile "$WORK/redis-rootfs.pid" >/dev/null || return 1
    local id=3f2c1a9e-8d4b-4f6a-9c7e-1b2d3e4f5a6b token=image-check-token
    local bucket digest
    bucket=$(python3 -c 'import sys
h = 2166136261
for b in sys.argv[1].encode(): h = ((h ^ b) * 16777619) & 0xffffffff
print(h % 16)' "$id")
    digest=$(printf %s "$token" | sha256sum | cut -c1-32)
    redis-cli -p "$port" HSET "hb:{$bucket}:dev:$id" token "$digest" >/dev/null
    chroot "$root" env LD_LIBRARY_PATH=/usr/lib/swift-runtime REDIS_URL="redis://127.0.0.1:$port" \
        HTTP_HOST=127.0.0.1 HTTP_PORT="$http" LOG_FORMAT=text /usr/local/bin/heartbeat-ingest >"$WORK/gateway-rootfs.log" 2>&1 &
    local gateway=$!
    for _ in $(seq 50); do
        reply=$(curl -s -X POST "http://127.0.0.1:$http/api/v1/devices/$id/heartbeat" -H "Authorization: Bearer $token" \
            -H 'Content-Type: application/json' -d "{\"device_id\":\"$id\",\"timestamp\":\"2026-02-02T10:30:00Z\"}" 2>/dev/null) &&
            [[ -n $reply ]] && break
        sleep 0.2
    done
    echo "one heartbeat to the gateway in the root (Redis on 127.0.0.1:$port): $reply"
    [[ $reply == *'"status":"ok"'* ]] && rc=0
    kill "$gateway" 2>/dev/null; wait "$gateway" 2>/dev/null
    redis-cli -p "$port" shutdown nosave >/dev/null 2>&1
    ((rc == 0)) || tail -n 20 "$WORK/gateway-rootfs.log"
    return $rc
}

rootfs_check() {
    local root=$WORK/rootfs dir="" exe out swiftlib
    local -a packages
    mapfile -t packages < <("$LINTPY" scripts/deploy_lint.py runtime-packages)
    for dir in ${HEARTBEAT_IMAGE_BIN:-} .build-static/release .build/release .build/debug ''; do
        [[ -n $dir && -x $dir/heartbeat-ingest && -x $dir/heartbeat-monitor ]] && break
    done
    [[ -n $dir ]] || { echo "no built executables under .build/: make release"; return 1; }
    debootstrap --variant=minbase bookworm "$root" >"$WORK/debootstrap.log" 2>&1 ||
        { tail -n 20 "$WORK/debootstrap.log"; return 1; }
    chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${packages[@]}" >"$WORK/apt.log" 2>&1 || { tail -n 20 "$WORK/apt.log"; return 1; }
    mkdir -p "$root/usr/local/bin" "$root/usr/lib/swift-runtime"
    cp "$dir/heartbeat-ingest" "$dir/heartbeat-monitor" "$root/usr/local/bin/"
    # A local build links the Swift runtime dynamically (the image's executables have it
    # statically): copy it in. Everything else must come from the packages.
    swiftlib=$(ldd "$dir/heartbeat-ingest" | awk '$1 == "libswiftCore.so" { print $3 }')
    [[ -n $swiftlib ]] && cp "$(dirname "$swiftlib")"/*.so "$root/usr/lib/swift-runtime/"
    # Swift reads its command line from /proc/self/cmdline.
    mount -t proc proc "$root/proc" || return 1
    MOUNTED=$root/proc
    for exe in heartbeat-ingest heartbeat-monitor; do
        out=$(chroot "$root" env LD_LIBRARY_PATH=/usr/lib/swift-runtime REDIS_URL=redis://127.0.0.1:1 \
            HTTP_PORT=0 timeout 10 "/usr/local/bin/$exe" --version 2>&1)
        echo "$dir/$exe in a bookworm minbase root with ${packages[*]}: $out"
        [[ $out == "$exe "* ]] || { umount "$root/proc"; MOUNTED=; return 1; }
    done
    # one heartbeat: the gateway in the root, Redis on the host's loopback (the chroot shares it)
    rootfs_heartbeat "$root" || { umount "$root/proc"; MOUNTED=; return 1; }
    umount "$root/proc"
    MOUNTED=
}
if [[ $ROOTFS == yes ]]; then
    check "bookworm rootfs with runtime-packages.txt runs both executables and a heartbeat" rootfs_check
fi

echo "$((checks - failures)) passed, $failures failed"
((failures == 0))
