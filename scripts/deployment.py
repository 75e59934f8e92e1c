#!/usr/bin/env python3
"""The whole heartbeat system deployed on this machine, on loopback, and its integration test.

    scripts/deployment.py start  [SETTINGS] [--fresh]  bring it up (what already runs is kept), print what runs where
    scripts/deployment.py status [--run-dir DIR]       what runs; exit 0 when all of it does, 3 otherwise
    scripts/deployment.py stop   [--run-dir DIR]       stop all of it (from the pid files: also after a crash)
    scripts/deployment.py test   [--short] [SETTINGS]  a fresh deployment, load and faults, checks, then stop

What runs, all state and logs under the run dir (default .run/deployment), all on 127.0.0.1:
  - Redis with an append-only file and the settings of deploy/redis.conf (applied with CONFIG SET
    and read back), PostgreSQL and the Kafka mock: scripts/services.sh with HEARTBEAT_RUN_DIR,
    REDIS_PORT, PG_PORT and REDIS_APPENDONLY=yes;
  - three gateways (heartbeat-ingest, HTTP_PORT and METRICS_PORT each) behind HAProxy, whose
    configuration is deploy/haproxy/haproxy.cfg with loopback binds and servers instead of
    Docker's DNS (health check GET /readyz, timeouts, balancing as committed);
  - two monitors (heartbeat-monitor, the same POSTGRES_URL, MONITOR_INSTANCE_ID monitor-1 and
    monitor-2, ADMIN_PORT and METRICS_PORT each): monitor-1 starts first and leads, monitor-2
    stands by; ADMIN_TOKEN_FILE and POSTGRES_URL_FILE point at files in the run dir;
  - Prometheus: deploy/prometheus/prometheus.yml with scrape and evaluation interval
    --scrape-interval, its file_sd target files written with the loopback ports, and
    deploy/prometheus/rules.yml (with --alert-timers-divisor N > 1 a copy whose `for:` durations
    are divided by N: `test` uses 60, so 2m becomes 2s), alerting to
  - Alertmanager: deploy/alertmanager/alertmanager.yml with its routes and inhibitions, every
    receiver a webhook to a local sink that records what it gets in webhook-sink/notifications.jsonl
    (Slack and PagerDuty are not reachable from here; --no-webhook-sink: receivers without any
    integration); with N > 1 its group_wait, group_interval and repeat_interval are divided by N.
    The monitors post their own alerts to it (ALERT_WEBHOOK_URL, ALERT_RESEND_SECONDS).
Every process started here carries HEARTBEAT_DEPLOYMENT_DIR=<run dir> in its environment; `stop`
and `status` act only on pids from the pid files (run dir/pids/) that carry it. The executables
are hard-linked from --bin (default .build/debug) into <run dir>/bin when a deployment starts from
nothing, so all its processes, restarts included, run one build while a rebuild replaces --bin.

`test` (the integration test; own run dir and ports: .run/deployment-test, --short
.run/deployment-test-short) starts a fresh deployment with durations scaled down
(OFFLINE_AFTER_SECONDS 2, SCAN_INTERVAL_SECONDS 0.5, ALERT_RESEND_SECONDS 2, alert timers / 60),
waits until Prometheus has settled (its first scrapes come ~5 s after it starts; what fired before
is reported, not judged), runs heartbeat-loadgen through HAProxy (it registers its devices through the ops API of the standby;
a share falls silent at mid-run) and, while it runs, SIGKILLs a gateway (started again once
Prometheus fires GatewayInstanceDown) and the leader monitor inside the silent devices' detection
window (started again a few seconds later with the same MONITOR_INSTANCE_ID, as a supervisor
would). When the load ends the live devices are parked an hour ahead in the Redis online sets, so
they are not declared offline while the loadgen audits. Then it checks: the loadgen's audit (each
silent device exactly one timely device.offline, no live device offline, every accepted heartbeat
in heartbeat_history; the one failure tolerated, with a warning, is history rows beyond the
accepted count by no more than the answers lost at the gateway kills: a heartbeat the killed
gateway stored whose reply died with it); heartbeat_history counted in PostgreSQL too; the outbox
drained to Kafka (read with kcat when installed); Prometheus fired GatewayInstanceDown for the
killed gateway and MonitorLeaderChanged after the leader kill, and none of the alerts that mean an
outage; Alertmanager got both alerts from Prometheus and a DeviceOffline from the monitors for
every silent device (none for a live one), and routed them to the receivers the committed routes
name; HAProxy has every gateway up again; every query of the Grafana dashboard
(scripts/dashboard_queries.py) returns data over the test's time range from this Prometheus,
except the ones on the commented allow-list below, which may be empty in a run without those faults;
no process crashed. It prints progress lines, a summary with figures, and exits 0 (passed),
1 (a check failed), 2 (the harness failed: something did not start), 130 (interrupted).
Everything is stopped at the end whatever happens; logs stay in the run dir.
--short (about 55 s, for `make test`): 100 devices every 0.5 s for 40 s (200 heartbeats/s), each
fault once; the full test (about 3.5 min): 150 devices for 180 s (300 heartbeats/s), every fault twice.
"""
import argparse
import json
import math
import os
import re
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402  (after the path insert)
from harness import (HarnessError, LoadgenReader, errors_between, http, pid_alive, pid_tagged, port_free, print_lock,  # noqa: E402
                     psql, read_pid, readyz, stamp, tail, wait_until)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.abspath(__file__)
DEPLOY = os.path.join(ROOT, "deploy")
TAG = "HEARTBEAT_DEPLOYMENT_DIR"
STATE = "deployment.json"
T_START = time.time()

# ---------------------------------------------------------------- settings

# Ports of the processes started here (Redis and PostgreSQL have their own entries in PROFILES).
# The defaults avoid scripts/services.sh's (6390/5440), the tests' (6391/5441), the benchmark's
# and chaos/fuzz runs' ports; each profile shifts them by its offset so that a deployment started
# by hand and both tests can run side by side.
HTTP_PORTS = {
    "lb_port": (18080, "HAProxy: the heartbeat API for devices (deploy example: 8080)"),
    "lb_stats_port": (18404, "HAProxy: statistics page /stats (deploy example: 8404)"),
    "gateway_ports": ([18181, 18182, 18183], "gateways' HTTP_PORT, one per gateway, comma-separated"),
    "gateway_metrics_ports": ([19181, 19182, 19183], "gateways' METRICS_PORT (deploy example: 9180)"),
    "monitor_ports": ([18281, 18282], "monitors' ADMIN_PORT (ops API), one per monitor"),
    "monitor_metrics_ports": ([19281, 19282], "monitors' METRICS_PORT (deploy example: 9181)"),
    "prometheus_port": (19090, "Prometheus (deploy example: 9090)"),
    "alertmanager_port": (19093, "Alertmanager (deploy example: 9093)"),
    "webhook_port": (19095, "the webhook sink Alertmanager's receivers post to"),
}

PROFILES = {
    # `start`: values a person can try by hand
    "start": dict(run_dir=".run/deployment", port_offset=0, redis_port=6393, pg_port=5443,
                  offline_after=30.0, scan_interval=5.0, alert_resend=10.0, heartbeat_min_interval=1.0,
                  leader_redis_timeout=None, reconcile_interval=None, scrape_interval=1.0, alert_timers_divisor=1),
    # `test`: durations scaled down as scripts/chaos.py does (the load beats every 0.5 s)
    "test": dict(run_dir=".run/deployment-test", port_offset=10000, redis_port=6394, pg_port=5444,
                 offline_after=2.0, scan_interval=0.5, alert_resend=2.0, heartbeat_min_interval=0.0,
                 leader_redis_timeout=1.0, reconcile_interval=5.0, scrape_interval=1.0, alert_timers_divisor=60),
    "test-short": dict(run_dir=".run/deployment-test-short", port_offset=4000, redis_port=6395, pg_port=5445,
                       offline_after=2.0, scan_interval=0.5, alert_resend=2.0, heartbeat_min_interval=0.0,
                       leader_redis_timeout=1.0, reconcile_interval=5.0, scrape_interval=1.0, alert_timers_divisor=60),
}
TIMING = ("offline_after", "scan_interval", "alert_resend", "heartbeat_min_interval", "leader_redis_timeout",
          "reconcile_interval", "scrape_interval", "alert_timers_divisor")


log = harness.logger("deployment", T_START)


def product_settings():
    """The names of the README's configuration table (REDIS_URL, POSTGRES_URL, ADMIN_TOKEN, …)."""
    text = open(os.path.join(ROOT, "README.md")).read()
    section = text.split("## Configuration (environment)", 1)[-1].split("\n## ", 1)[0]
    return {name for row in section.splitlines() if row.startswith("| `") for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])}


def inherited_environment():
    """This process's environment without the product's own settings and their `_FILE` forms: a
    caller's POSTGRES_URL (make test exports its own) must not reach a deployment's processes,
    which get theirs explicitly (and would refuse POSTGRES_URL next to POSTGRES_URL_FILE)."""
    names = product_settings()
    return {k: v for k, v in os.environ.items() if k not in names and not (k.endswith("_FILE") and k[:-5] in names)}


def port_list(text):
    try:
        ports = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of ports: {text}")
    if not ports or any(not 0 < p < 65536 for p in ports):
        raise argparse.ArgumentTypeError(f"invalid port list: {text}")
    return ports


def port(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port: {text}")
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"invalid port: {text}")
    return value


def env_pair(text):
    name, sep, value = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE: {text}")
    return name, value


def resolve(args, profile):
    """The settings of a deployment: flags, else the profile's defaults."""
    p = PROFILES[profile]
    s = {"profile": profile, "run_dir": os.path.abspath(args.run_dir or os.path.join(ROOT, p["run_dir"]))}
    s["redis_port"] = args.redis_port or p["redis_port"]
    s["pg_port"] = args.pg_port or p["pg_port"]
    for name, (default, _) in HTTP_PORTS.items():
        value = getattr(args, name)
        if value is None:
            value = [d + p["port_offset"] for d in default] if isinstance(default, list) else default + p["port_offset"]
        s[name] = value
    for name in TIMING:
        value = getattr(args, name)
        s[name] = p[name] if value is None else value
    s["bin"] = os.path.abspath(args.bin)
    s["gateway_env"] = dict(args.gateway_env or [])
    s["monitor_env"] = dict(args.monitor_env or [])
    s["log_level"] = args.log_level
    s["webhook_sink"] = not args.no_webhook_sink
    s["kafka_mock_args"] = args.kafka_mock_args
    if len(s["gateway_ports"]) != len(s["gateway_metrics_ports"]):
        raise SystemExit("deployment.py: --gateway-ports and --gateway-metrics-ports need as many ports each")
    if len(s["monitor_ports"]) != len(s["monitor_metrics_ports"]):
        raise SystemExit("deployment.py: --monitor-ports and --monitor-metrics-ports need as many ports each")
    if s["alert_timers_divisor"] < 1:
        raise SystemExit("deployment.py: --alert-timers-divisor must be at least 1")
    used = all_ports(s)
    if len(used) != len(set(used)):
        raise SystemExit(f"deployment.py: a port is given twice: {sorted(used)}")
    return s


def all_ports(s):
    ports = [s["redis_port"], s["pg_port"]]
    for name in HTTP_PORTS:
        ports += s[name] if isinstance(s[name], list) else [s[name]]
    return ports


def load_state(run_dir):
    try:
        with open(os.path.join(run_dir, STATE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def save_state(s):
    os.makedirs(s["run_dir"], exist_ok=True)
    path = os.path.join(s["run_dir"], STATE)
    with open(path + ".tmp", "w") as f:
        json.dump(s, f, indent=2, sort_keys=True)
    os.replace(path + ".tmp", path)


# ---------------------------------------------------------------- small helpers

def http_json(url, timeout=2.0):
    status, text = http(url, timeout=timeout)
    if status != 200:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def duration_ms(text):
    """A Prometheus/Alertmanager duration (1h30m, 2m, 500ms) in milliseconds."""
    units = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000, "y": 31_536_000_000}
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w|y)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise HarnessError(f"not a duration: {text}")
    return sum(int(n) * units[u] for n, u in parts)


def format_duration(ms):
    ms = max(1, int(round(ms)))
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def seconds_setting(value):
    """A duration setting as the README's variables take it (fractions allowed)."""
    return f"{value:g}"


def rel(path):
    return os.path.relpath(path, ROOT) if path.startswith(ROOT + os.sep) else path


def iso_epoch(text):
    """Prometheus' and Alertmanager's RFC 3339 times (nanoseconds, Z) as epoch seconds."""
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", text or "")
    if not match:
        return None
    base = datetime.fromisoformat(match.group(1) + (match.group(3).replace("Z", "+00:00")))
    return base.timestamp() + (float("0" + match.group(2)) if match.group(2) else 0.0)


# ---------------------------------------------------------------- generated configuration

def deploy_file(*parts):
    path = os.path.join(DEPLOY, *parts)
    with open(path) as f:
        return f.read()


def check_tool(argv, what):
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise HarnessError(f"{what} failed ({' '.join(argv)}):\n{result.stdout}{result.stderr}")


def target_labels(committed):
    """The `labels:` block of a committed file_sd target file, as its lines."""
    lines, inside = [], False
    for line in committed.splitlines():
        if re.match(r"^\s+labels:\s*$", line):
            inside = True
            lines.append(line)
        elif inside and re.match(r"^\s{4,}\S", line):
            lines.append(line)
        else:
            inside = False
    return lines


def write_prometheus_config(s, directory):
    """deploy/prometheus/prometheus.yml with the intervals, the self-scrape address and the target
    files changed; rules.yml next to it (scaled with the divisor). Checked with promtool."""
    os.makedirs(os.path.join(directory, "targets"), exist_ok=True)
    text = deploy_file("prometheus", "prometheus.yml")
    interval = format_duration(s["scrape_interval"] * 1000)
    for key in ("scrape_interval", "scrape_timeout", "evaluation_interval"):
        text, n = re.subn(rf"^(  {key}:\s*)\S+", rf"\g<1>{interval}", text, count=1, flags=re.M)
        if n != 1:
            raise HarnessError(f"deploy/prometheus/prometheus.yml: no global {key} to rewrite")
    if "localhost:9090" not in text:
        raise HarnessError("deploy/prometheus/prometheus.yml: no localhost:9090 (Prometheus' own target) to rewrite")
    text = text.replace("localhost:9090", f"127.0.0.1:{s['prometheus_port']}")
    header = (f"# Generated by scripts/deployment.py from deploy/prometheus/prometheus.yml: scrape and evaluation\n"
              f"# interval {interval}, targets on loopback (targets/*.yml here). Do not edit: regenerated on start.\n")
    with open(os.path.join(directory, "prometheus.yml"), "w") as f:
        f.write(header + text)

    targets = {
        "heartbeat-ingest.yml": [f"127.0.0.1:{p}" for p in s["gateway_metrics_ports"]],
        "heartbeat-monitor.yml": [f"127.0.0.1:{p}" for p in s["monitor_metrics_ports"]],
        "alertmanager.yml": [f"127.0.0.1:{s['alertmanager_port']}"],
    }
    named = re.findall(r"^\s+- (targets/\S+)\s*$", text, flags=re.M)
    for name in named:
        base = os.path.basename(name)
        if base not in targets:
            raise HarnessError(f"deploy/prometheus/prometheus.yml names {name}: no loopback targets known for it")
        labels = target_labels(deploy_file("prometheus", "targets", base))
        with open(os.path.join(directory, "targets", base), "w") as f:
            f.write("# Generated by scripts/deployment.py (loopback ports of this deployment).\n- targets:\n")
            f.write("".join(f"    - {t}\n" for t in targets[base]))
            f.write("".join(line + "\n" for line in labels))

    rule_files = re.findall(r"^rule_files:\s*\n((?:\s+- .*\n)+)", text, flags=re.M)
    names = re.findall(r"- (\S+)", rule_files[0]) if rule_files else []
    if not names:
        raise HarnessError("deploy/prometheus/prometheus.yml: no rule_files")
    scaled = []
    for name in names:
        rules = deploy_file("prometheus", name)
        divisor = s["alert_timers_divisor"]
        if divisor > 1:
            def scale(m):
                new = format_duration(duration_ms(m.group(2)) / divisor)
                scaled.append(f"{m.group(2)}→{new}")
                return f"{m.group(1)}{new}"
            rules = re.sub(r"^(\s+for:\s*)(\S+)\s*$", scale, rules, flags=re.M)
            rules = (f"# Generated by scripts/deployment.py from deploy/prometheus/{name} for a test: every `for:`\n"
                     f"# divided by {divisor}. Never deploy this copy.\n") + rules
        with open(os.path.join(directory, name), "w") as f:
            f.write(rules)
    check_tool(["promtool", "check", "config", os.path.join(directory, "prometheus.yml")], "promtool check config")
    return sorted(set(scaled), key=scaled.index)


def write_alertmanager_config(s, directory):
    """deploy/alertmanager/alertmanager.yml: routes and inhibitions as committed, every receiver a
    webhook to the local sink (or none), the Slack URL file dropped; route timers divided by the
    divisor. Checked with amtool."""
    os.makedirs(directory, exist_ok=True)
    text = deploy_file("alertmanager", "alertmanager.yml")
    text = re.sub(r"^\s+slack_api_url_file:.*\n", "", text, flags=re.M)
    head, sep, receivers = text.partition("\nreceivers:\n")
    if not sep:
        raise HarnessError("deploy/alertmanager/alertmanager.yml: no receivers section")
    names = re.findall(r"^  - name:\s*(\S+)\s*$", receivers, flags=re.M)
    if not names:
        raise HarnessError("deploy/alertmanager/alertmanager.yml: no receiver names")
    divisor = s["alert_timers_divisor"]
    if divisor > 1:
        head = re.sub(r"^(\s+(?:group_wait|group_interval|repeat_interval):\s*)(\S+)\s*$",
                      lambda m: m.group(1) + format_duration(duration_ms(m.group(2)) / divisor), head, flags=re.M)
    out = ["\nreceivers:\n"]
    for name in names:
        out.append(f"  - name: {name}\n")
        if s["webhook_sink"]:
            out.append(f"    webhook_configs:\n      - url: http://127.0.0.1:{s['webhook_port']}/{name}\n        send_resolved: true\n")
    header = ("# Generated by scripts/deployment.py from deploy/alertmanager/alertmanager.yml: routes and inhibitions\n"
              + (f"# with group_wait / group_interval / repeat_interval divided by {divisor}, " if divisor > 1 else "# as committed, ")
              + ("every receiver a webhook to the local sink\n" if s["webhook_sink"] else "receivers without integrations\n")
              + "# (Slack and PagerDuty are not reachable from here). Regenerated on start.\n")
    path = os.path.join(directory, "alertmanager.yml")
    with open(path, "w") as f:
        f.write(header + head + "".join(out))
    check_tool(["amtool", "check-config", path], "amtool check-config")
    return names


def write_haproxy_config(s, path):
    """deploy/haproxy/haproxy.cfg with loopback binds and one loopback server per gateway instead of
    Docker's DNS (the resolvers section and the default-server's resolvers/init-addr dropped).
    Checked with haproxy -c."""
    text = deploy_file("haproxy", "haproxy.cfg")
    text = re.sub(r"^resolvers \S+\n(?:[ \t]+.*\n)*\n?", "", text, flags=re.M)
    text = re.sub(r"^(\s+(?:default-server|server)\s.*)$",
                  lambda m: re.sub(r"\s+(?:resolvers|init-addr)\s+\S+", "", m.group(1)), text, flags=re.M)
    binds = {8080: s["lb_port"], 8404: s["lb_stats_port"]}

    def bind(m):
        if int(m.group(2)) not in binds:
            raise HarnessError(f"deploy/haproxy/haproxy.cfg binds port {m.group(2)}: no loopback port known for it")
        return f"{m.group(1)}bind 127.0.0.1:{binds[int(m.group(2))]}"
    text = re.sub(r"^(\s+)bind\s+\S*:(\d+)\S*", bind, text, flags=re.M)
    lines, out, placed = text.splitlines(), [], False
    for line in lines:
        match = re.match(r"^(\s+)server\s", line)
        if match:
            if not placed:
                out += [f"{match.group(1)}server gateway-{i + 1} 127.0.0.1:{p}" for i, p in enumerate(s["gateway_ports"])]
                placed = True
            continue
        out.append(line)
    if not placed:
        raise HarnessError("deploy/haproxy/haproxy.cfg: no server lines to replace")
    # HAProxy wants about two descriptors per connection: lower maxconn when this machine's limit is below that
    header_note = ""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    match = re.search(r"^global\n(?:[ \t]+.*\n|\n)*?[ \t]+maxconn[ \t]+(\d+)", "\n".join(out) + "\n", flags=re.M)
    if match and hard != resource.RLIM_INFINITY and 2 * int(match.group(1)) + 100 > hard:
        lowered = max(256, (hard - 100) // 2)
        text = re.sub(r"^([ \t]+maxconn[ \t]+)\d+", rf"\g<1>{lowered}", "\n".join(out), count=1, flags=re.M)
        out = text.split("\n")
        header_note = f"# global maxconn {match.group(1)} lowered to {lowered}: this machine's descriptor limit is {hard}.\n"
    header = ("# Generated by scripts/deployment.py from deploy/haproxy/haproxy.cfg: loopback binds and servers\n"
              "# (no Docker DNS). Regenerated on start.\n" + header_note)
    with open(path, "w") as f:
        f.write(header + "\n".join(out) + "\n")
    check_tool(["haproxy", "-c", "-q", "-f", path], "haproxy -c")


# ---------------------------------------------------------------- services (scripts/services.sh)

def service_env(s):
    env = harness.service_env(s["run_dir"], s["redis_port"], s["pg_port"], REDIS_APPENDONLY="yes")
    if s.get("kafka_mock_args"):
        env["KAFKA_MOCK_ARGS"] = s["kafka_mock_args"]
    return env


def services(s, *argv, check=True, timeout=180):
    return harness.run_services(service_env(s), *argv, timeout=timeout, check=check)


def service_urls(s):
    return harness.service_urls(service_env(s), timeout=180)


def redis_cli(s, *command, timeout=10):
    return subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(s["redis_port"]), *command],
                          capture_output=True, text=True, timeout=timeout).stdout.strip()


def apply_redis_conf(s):
    """Every directive of deploy/redis.conf, applied with CONFIG SET and read back."""
    applied, refused = [], []
    for line in deploy_file("redis.conf").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        value = value.strip()
        reply = redis_cli(s, "CONFIG", "SET", key, value)
        got = redis_cli(s, "CONFIG", "GET", key).splitlines()
        if reply == "OK" and len(got) == 2 and got[1] == value:
            applied.append(f"{key} {value}")
        else:
            refused.append(f"{key} {value} ({reply or 'no reply'})")
    return applied, refused


# ---------------------------------------------------------------- processes

class Component:
    """A process of the deployment: argv, environment, pid file, log, readiness probe."""

    def __init__(self, s, name, kind, argv, env=None, addresses=None, ready=None, ports=()):
        self.s, self.name, self.kind, self.argv, self.env, self.ports = s, name, kind, argv, env or {}, list(ports)
        self.addresses = addresses or []      # (label, address) for the table
        self.ready = ready or (lambda: True)
        self.log_path = os.path.join(s["run_dir"], "logs", f"{name}.log")
        self.pid_path = os.path.join(s["run_dir"], "pids", f"{name}.pid")
        self.popen = None                     # set when started by this invocation
        self.expected_exit = False
        self.crash_reported = False

    def pid(self):
        """The live pid from the pid file, if it is ours."""
        pid = read_pid(self.pid_path)
        if pid and pid_alive(pid) and pid_tagged(pid, TAG, self.s["run_dir"]):
            return pid
        return None

    @property
    def alive(self):
        if self.popen is not None:
            return self.popen.poll() is None
        return self.pid() is not None

    def start(self, extra_env=None):
        binary = self.argv[0]
        if os.sep in binary and not wait_until(lambda: os.access(binary, os.X_OK), 120, poll=1):
            raise HarnessError(f"{binary} missing (a rebuild in progress?)")
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        os.makedirs(os.path.dirname(self.pid_path), exist_ok=True)
        env = dict(inherited_environment(), **self.env, **(extra_env or {}))
        env[TAG] = self.s["run_dir"]
        with open(self.log_path, "a") as out:
            out.write(f"==== deployment.py: starting {self.name} at {stamp()}\n")
            out.flush()
            self.popen = subprocess.Popen(self.argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          cwd=self.s["run_dir"], start_new_session=True)
        self.expected_exit = False
        self.crash_reported = False
        with open(self.pid_path, "w") as f:
            f.write(f"{self.popen.pid}\n")
        return self.popen.pid

    def kill(self):
        """SIGKILL (a fault of the test)."""
        self.expected_exit = True
        pid = self.popen.pid if self.popen is not None else self.pid()
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if self.popen is not None:
                self.popen.wait(timeout=10)
        return pid

    def terminate(self):
        self.expected_exit = True
        pid = self.popen.pid if self.popen is not None and self.popen.poll() is None else self.pid()
        if pid:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        return pid

    def wait_gone(self, pid, timeout):
        if self.popen is not None and self.popen.pid == pid:
            try:
                self.popen.wait(timeout=timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        return bool(wait_until(lambda: not pid_alive(pid), timeout, poll=0.1))

    def tail(self, n=15):
        return tail(self.log_path, n)


def haproxy_servers(s, timeout=1.0):
    """{server name: status} of the gateways backend from HAProxy's CSV statistics."""
    status, text = http(f"http://127.0.0.1:{s['lb_stats_port']}/stats;csv", timeout=timeout)
    if status != 200:
        return {}
    lines = text.lstrip("# ").splitlines()
    if not lines:
        return {}
    header = lines[0].split(",")
    try:
        px, sv, st = header.index("pxname"), header.index("svname"), header.index("status")
    except ValueError:
        return {}
    servers = {}
    for line in lines[1:]:
        cols = line.split(",")
        if len(cols) > st and cols[px] == "gateways" and cols[sv] not in ("FRONTEND", "BACKEND"):
            servers[cols[sv]] = cols[st]
    return servers


def build_components(s, urls):
    """Every process of the deployment, in start order (Alertmanager before the monitors that post to it)."""
    run = s["run_dir"]
    comps = []
    if s["webhook_sink"]:
        port_ = s["webhook_port"]
        comps.append(Component(
            s, "webhook-sink", "sink",
            [sys.executable, SCRIPT, "_webhook-sink", "--port", str(port_), "--out", os.path.join(run, "webhook-sink", "notifications.jsonl")],
            addresses=[("receivers", f"http://127.0.0.1:{port_}/<receiver>")], ports=[port_],
            ready=lambda: http(f"http://127.0.0.1:{port_}/-/ready", timeout=0.5)[0] == 200))
    am = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager") or "prometheus-alertmanager"
    am_port = s["alertmanager_port"]
    comps.append(Component(
        s, "alertmanager", "alertmanager",
        [am, f"--config.file={run}/alertmanager/alertmanager.yml", f"--storage.path={run}/alertmanager/data",
         f"--web.listen-address=127.0.0.1:{am_port}", f"--web.external-url=http://127.0.0.1:{am_port}/",
         "--cluster.listen-address=", f"--log.level={'debug' if s['log_level'] == 'debug' else 'info'}"],
        addresses=[("http", f"http://127.0.0.1:{am_port}")], ports=[am_port],
        ready=lambda: http(f"http://127.0.0.1:{am_port}/-/ready", timeout=0.5)[0] == 200))
    common = {"REDIS_URL": urls["REDIS_URL"], "LOG_LEVEL": s["log_level"]}
    for i, (ops, metrics) in enumerate(zip(s["monitor_ports"], s["monitor_metrics_ports"])):
        env = dict(common, POSTGRES_URL_FILE=os.path.join(run, "secrets", "postgres-url"),
                   ADMIN_TOKEN_FILE=os.path.join(run, "secrets", "admin-token"), KAFKA_BROKERS=urls["KAFKA_BROKERS"],
                   ADMIN_HOST="127.0.0.1", ADMIN_PORT=str(ops), METRICS_PORT=str(metrics), MONITOR_INSTANCE_ID=f"monitor-{i + 1}",
                   OFFLINE_AFTER_SECONDS=seconds_setting(s["offline_after"]), SCAN_INTERVAL_SECONDS=seconds_setting(s["scan_interval"]),
                   ALERT_WEBHOOK_URL=f"http://127.0.0.1:{am_port}", ALERT_RESEND_SECONDS=seconds_setting(s["alert_resend"]))
        if s["leader_redis_timeout"] is not None:
            env["LEADER_REDIS_TIMEOUT_SECONDS"] = seconds_setting(s["leader_redis_timeout"])
        if s["reconcile_interval"] is not None:
            env["RECONCILE_INTERVAL_SECONDS"] = seconds_setting(s["reconcile_interval"])
        env.update(s["monitor_env"])
        comps.append(Component(
            s, f"monitor-{i + 1}", "monitor", [os.path.join(run_bin(s), "heartbeat-monitor")], env,
            addresses=[("ops API", f"http://127.0.0.1:{ops}"), ("metrics", f"127.0.0.1:{metrics}")], ports=[ops, metrics],
            ready=lambda ops=ops: readyz(ops)[0] == 200))
    for i, (http_port, metrics) in enumerate(zip(s["gateway_ports"], s["gateway_metrics_ports"])):
        env = dict(common, HTTP_HOST="127.0.0.1", HTTP_PORT=str(http_port), METRICS_PORT=str(metrics),
                   HEARTBEAT_MIN_INTERVAL_SECONDS=seconds_setting(s["heartbeat_min_interval"]))
        env.update(s["gateway_env"])
        comps.append(Component(
            s, f"gateway-{i + 1}", "gateway", [os.path.join(run_bin(s), "heartbeat-ingest")], env,
            addresses=[("http", f"http://127.0.0.1:{http_port}"), ("metrics", f"127.0.0.1:{metrics}")], ports=[http_port, metrics],
            ready=lambda p=http_port: http(f"http://127.0.0.1:{p}/readyz", timeout=0.5)[0] == 200))
    comps.append(Component(
        s, "haproxy", "haproxy", [shutil.which("haproxy") or "haproxy", "-db", "-f", os.path.join(run, "haproxy", "haproxy.cfg")],
        addresses=[("devices", f"http://127.0.0.1:{s['lb_port']}"), ("stats", f"http://127.0.0.1:{s['lb_stats_port']}/stats")],
        ports=[s["lb_port"], s["lb_stats_port"]],
        ready=lambda: http(f"http://127.0.0.1:{s['lb_stats_port']}/stats;csv", timeout=0.5)[0] == 200))
    # Prometheus last, once a monitor leads: its first scrape of the leader already counts that term,
    # so MonitorLeaderChanged does not fire for the start itself (a test must see it fire for a failover)
    prom_port = s["prometheus_port"]
    comps.append(Component(
        s, "prometheus", "prometheus",
        [shutil.which("prometheus") or "prometheus", f"--config.file={run}/prometheus/prometheus.yml",
         f"--storage.tsdb.path={run}/prometheus/data", f"--web.listen-address=127.0.0.1:{prom_port}",
         f"--web.external-url=http://127.0.0.1:{prom_port}/", "--storage.tsdb.retention.time=7d"],
        addresses=[("http", f"http://127.0.0.1:{prom_port}")], ports=[prom_port],
        ready=lambda: http(f"http://127.0.0.1:{prom_port}/-/ready", timeout=0.5)[0] == 200))
    return comps


def stub_components(s):
    """The components of a recorded deployment, for stop and status (no service URLs needed)."""
    return build_components(s, {"REDIS_URL": "", "KAFKA_BROKERS": ""})


STOP_ORDER = ("haproxy", "gateway", "monitor", "prometheus", "alertmanager", "sink")


def stop_components(comps, quiet=False):
    """SIGTERM by group (load balancer, gateways, monitors, the rest), then SIGKILL what lingers."""
    stopped = []
    for kind in STOP_ORDER:
        group = [c for c in comps if c.kind == kind]
        if kind == "monitor":  # standbys first, so leadership does not move around while stopping
            group.sort(key=lambda c: readyz(int(c.env.get("ADMIN_PORT", 0)), 0.3)[1].get("leader") is True)
        pids = [(c, c.terminate()) for c in group]
        for c, pid in pids:
            if not pid:
                continue
            if not c.wait_gone(pid, 20):
                if not quiet:
                    log(f"{c.name} (pid {pid}) still running 20 s after SIGTERM: SIGKILL")
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                c.wait_gone(pid, 5)
            stopped.append(f"{c.name} ({pid})")
        for c in group:
            try:
                os.remove(c.pid_path)
            except OSError:
                pass
    return stopped


def stop_all(s, quiet=False):
    stopped = []
    # a loadgen of a test that was killed itself
    loadgen_pid_path = os.path.join(s["run_dir"], "pids", "loadgen.pid")
    pid = read_pid(loadgen_pid_path)
    if pid and pid_alive(pid) and pid_tagged(pid, TAG, s["run_dir"]):
        os.kill(pid, signal.SIGKILL)
        stopped.append(f"heartbeat-loadgen ({pid})")
    if os.path.exists(loadgen_pid_path):
        os.remove(loadgen_pid_path)
    stopped += stop_components(stub_components(s), quiet)
    if not quiet:
        log("stopped: " + (", ".join(stopped) if stopped else "no process of ours was running"))
    result = services(s, "stop", check=False)
    if not quiet:
        for line in result.stdout.splitlines():
            log(line)


BINARIES = ("heartbeat-ingest", "heartbeat-monitor", "heartbeat-loadgen")


def run_bin(s):
    return os.path.join(s["run_dir"], "bin")


def snapshot_binaries(s):
    """Hard links (copies across file systems) of the built executables in <run dir>/bin: every
    process of one deployment, restarts included, runs the same build although a rebuild may
    replace --bin at any moment (a gateway of another build beside the others is a mixed-version
    deployment, not this one). Waits for a binary a build is still writing. Returns a description."""
    target = run_bin(s)
    os.makedirs(target, exist_ok=True)
    described = []
    for name in BINARIES:
        source = os.path.join(s["bin"], name)
        # present, and not written in the last 3 s (a link being written has a fresh mtime)
        if not wait_until(lambda: os.access(source, os.X_OK) and time.time() - os.stat(source).st_mtime > 3, 180, poll=1):
            raise HarnessError(f"{source} missing or still being written after 180 s: swift build, or --bin DIR")
        temp = os.path.join(target, name + ".tmp")
        if os.path.lexists(temp):
            os.remove(temp)
        try:
            os.link(source, temp)
        except OSError:
            shutil.copy2(source, temp)
        os.replace(temp, os.path.join(target, name))
        built = time.strftime("%H:%M:%S", time.localtime(os.stat(source).st_mtime))
        version = ""
        if name != "heartbeat-loadgen":
            out = subprocess.run([os.path.join(target, name), "--version"], capture_output=True, text=True, timeout=30)
            version = out.stdout.strip().split()[-1] if out.returncode == 0 and out.stdout.strip() else "?"
        described.append(f"{name}{' ' + version if version else ''} (built {built})")
    return ", ".join(described)


def secrets_files(s, urls):
    directory = os.path.join(s["run_dir"], "secrets")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    token_path = os.path.join(directory, "admin-token")
    if not os.path.exists(token_path):
        fd = os.open(token_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(24))
    fd = os.open(os.path.join(directory, "postgres-url"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(urls["POSTGRES_URL"])
    with open(token_path) as f:
        return f.read().strip()


def start_deployment(s, fresh=False):
    """Starts what is not running yet; returns (components, urls, figures). Raises HarnessError."""
    run = s["run_dir"]
    for tool, package in (("haproxy", "haproxy"), ("prometheus", "prometheus"), ("promtool", "prometheus"),
                          ("amtool", "prometheus-alertmanager"), ("redis-cli", "redis-server"), ("psql", "postgresql-client")):
        if not shutil.which(tool):
            raise HarnessError(f"'{tool}' not found: install the Debian package '{package}'")
    if not (shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")):
        raise HarnessError("'prometheus-alertmanager' not found: install the Debian package 'prometheus-alertmanager'")
    recorded = load_state(run)
    comps_before = stub_components(recorded) if recorded else []
    running = {c.name for c in comps_before if c.alive}
    if recorded and running and any(recorded.get(k) != s.get(k) for k in ["redis_port", "pg_port", *HTTP_PORTS]):
        raise HarnessError(f"a deployment with other ports runs in {rel(run)} ({', '.join(sorted(running))}): stop it first")
    os.makedirs(run, exist_ok=True)
    save_state(s)
    ours = {p for c in stub_components(s) if c.alive for p in c.ports}  # ports of our processes that run
    status = services(s, "status", "redis", "postgres", check=False).stdout
    if "redis: running" in status:
        ours.add(s["redis_port"])
    if "postgres: running" in status:
        ours.add(s["pg_port"])
    busy = [p for p in all_ports(s) if p not in ours and not port_free(p)]
    running_ours = [c.name for c in stub_components(s) if c.alive]
    if busy:
        flags = {}
        for name in ["redis_port", "pg_port", *HTTP_PORTS]:
            for p in (s[name] if isinstance(s[name], list) else [s[name]]):
                flags[p] = "--" + name.replace("_", "-")
        raise HarnessError("ports in use by something else: " + ", ".join(f"{p} ({flags[p]})" for p in busy) + "; choose others with those flags")

    if not running_ours or not all(os.access(os.path.join(run_bin(s), b), os.X_OK) for b in BINARIES):
        s["build"] = snapshot_binaries(s)
        save_state(s)
        log(f"executables: {rel(s['bin'])} linked into {rel(run_bin(s))}, so every process of this deployment runs one build: {s['build']}")
    else:
        s["build"] = (recorded or {}).get("build", "?")
        log(f"executables: {rel(run_bin(s))} as linked when this deployment started ({', '.join(running_ours)} run): {s['build']}")
    if fresh:
        log("fresh state: Redis's append-only file, Prometheus' and Alertmanager's data and the schema are removed")
        services(s, "stop", "redis")
        for sub in ("redis", "prometheus/data", "alertmanager/data", "webhook-sink"):
            shutil.rmtree(os.path.join(run, sub), ignore_errors=True)
    for line in services(s, "start").stdout.splitlines():
        log(line)
    urls = service_urls(s)
    if fresh:
        psql(urls["POSTGRES_URL"], "DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    applied, refused = apply_redis_conf(s)
    log(f"redis: deploy/redis.conf applied ({', '.join(applied)})" + (f"; NOT applied: {', '.join(refused)}" if refused else ""))
    if refused:
        raise HarnessError(f"Redis refused settings of deploy/redis.conf: {', '.join(refused)}")
    token = secrets_files(s, urls)

    scaled = write_prometheus_config(s, os.path.join(run, "prometheus"))
    receivers = write_alertmanager_config(s, os.path.join(run, "alertmanager"))
    os.makedirs(os.path.join(run, "haproxy"), exist_ok=True)
    write_haproxy_config(s, os.path.join(run, "haproxy", "haproxy.cfg"))
    if scaled:
        log(f"prometheus rules: a copy of deploy/prometheus/rules.yml with every `for:` divided by {s['alert_timers_divisor']} "
            f"({', '.join(scaled)}): {rel(os.path.join(run, 'prometheus', 'rules.yml'))}")
    log(f"generated and checked (promtool, amtool, haproxy -c): {rel(os.path.join(run, 'prometheus', 'prometheus.yml'))}, "
        f"{rel(os.path.join(run, 'alertmanager', 'alertmanager.yml'))} (receivers {', '.join(receivers)}"
        f"{' → webhook sink' if s['webhook_sink'] else ': no integrations'}), {rel(os.path.join(run, 'haproxy', 'haproxy.cfg'))}")

    comps = build_components(s, urls)
    started = []
    for c in comps:
        pid = c.pid()
        if pid:
            log(f"{c.name} already running (pid {pid})")
            continue
        if c.kind == "monitor" and c.name != "monitor-1":
            # monitor-1 leads when the deployment starts from nothing: wait for its lock first
            first = next(m for m in comps if m.kind == "monitor")
            if first.name in [x.name for x in started]:
                port1 = int(first.env["ADMIN_PORT"])
                if not wait_until(lambda: readyz(port1)[1].get("leader") is True, 60, poll=0.1):
                    raise HarnessError(f"{first.name} not leading within 60 s; log {rel(first.log_path)}:\n{first.tail()}")
        pid = c.start()
        started.append(c)
        if not wait_until(lambda: c.ready() or not c.alive, 90, poll=0.1) or not c.alive:
            raise HarnessError(f"{c.name} (pid {pid}) {'exited' if not c.alive else 'not ready within 90 s'}; "
                               f"log {rel(c.log_path)}:\n{c.tail()}")
        log(f"{c.name} started (pid {pid}), ready")
    if haproxy_up(s, 60) is None:
        raise HarnessError(f"HAProxy does not have every gateway UP within 60 s: {haproxy_servers(s)}")
    leaders = [m.name for m in comps if m.kind == "monitor" and readyz(int(m.env["ADMIN_PORT"]))[1].get("leader") is True]
    if len(leaders) != 1:
        raise HarnessError(f"expected one leader monitor, found {leaders or 'none'}")
    if not wait_until(lambda: prometheus_targets_up(s), 30, poll=0.5):
        raise HarnessError(f"Prometheus does not scrape every target within 30 s: {prometheus_targets(s)}")
    return comps, urls, token


def haproxy_up(s, timeout):
    n = len(s["gateway_ports"])
    return wait_until(lambda: (lambda v: len(v) == n and all(x.startswith("UP") for x in v.values()))(haproxy_servers(s)), timeout, poll=0.2)


def prometheus_targets(s):
    data = http_json(f"http://127.0.0.1:{s['prometheus_port']}/api/v1/targets?state=active")
    if not data:
        return {}
    return {f"{t['labels'].get('job')} {t['labels'].get('instance')}": t.get("health") for t in data["data"]["activeTargets"]}


def prometheus_targets_up(s):
    targets = prometheus_targets(s)
    expected = len(s["gateway_ports"]) + len(s["monitor_ports"]) + 2  # + prometheus, alertmanager
    return len(targets) >= expected and all(h == "up" for h in targets.values())


# ---------------------------------------------------------------- status table

def table(s, comps=None):
    comps = comps or stub_components(s)
    rows = [("component", "pid", "state", "address", "log")]
    status = services(s, "status", check=False).stdout
    env = {}
    try:
        env = service_urls(s)
    except HarnessError:
        pass
    for line in status.splitlines():
        name, _, rest = line.partition(": ")
        match = re.search(r"pid (\d+)", rest)
        addr = {"redis": f"redis://127.0.0.1:{s['redis_port']} (append-only file)", "postgres": env.get("POSTGRES_URL", f"127.0.0.1:{s['pg_port']}"),
                "kafka": f"{env.get('KAFKA_BROKERS', '?')} (mock)"}.get(name, "")
        logs = {"redis": "redis/redis.log", "postgres": "pg/pg.log", "kafka": "kafka/kafka.log"}.get(name, "")
        rows.append((name, match.group(1) if match else "-", "running" if rest.startswith("running") else "stopped", addr,
                     rel(os.path.join(s["run_dir"], logs))))
    servers = haproxy_servers(s, 0.5)
    for c in comps:
        pid = c.pid()
        state = "stopped"
        if pid:
            state = "ready" if c.ready() else "not ready"
            if c.kind == "monitor" and state == "ready":
                state = "leader" if readyz(int(c.env["ADMIN_PORT"]))[1].get("leader") is True else "standby"
            if c.kind == "gateway" and c.name in servers:
                state += f", haproxy {servers[c.name]}"
        rows.append((c.name, str(pid or "-"), state, ", ".join(f"{k} {v}" for k, v in c.addresses), rel(c.log_path)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(4)) + "  " + r[4] for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths) + "  " + "-" * 3)
    running = sum(1 for r in rows[1:] if r[2] != "stopped")
    return "\n".join(lines), running, len(rows) - 1


def print_start_help(s):
    run = s["run_dir"]
    token_file = rel(os.path.join(run, "secrets", "admin-token"))
    ops = s["monitor_ports"][0]
    print(f"""
Settings: OFFLINE_AFTER_SECONDS={seconds_setting(s['offline_after'])} SCAN_INTERVAL_SECONDS={seconds_setting(s['scan_interval'])} \
ALERT_RESEND_SECONDS={seconds_setting(s['alert_resend'])} HEARTBEAT_MIN_INTERVAL_SECONDS={seconds_setting(s['heartbeat_min_interval'])}; \
Prometheus every {seconds_setting(s['scrape_interval'])} s{'' if s['alert_timers_divisor'] == 1 else f", alert timers / {s['alert_timers_divisor']}"}.
Executables (one build for the whole deployment, restarts included): {rel(run_bin(s))}: {s.get('build', '?')}
Admin token (ops API): {token_file}
  export ADMIN_TOKEN=$(cat {token_file})
  curl -s -H "Authorization: Bearer $ADMIN_TOKEN" -d '{{"name":"lobby"}}' http://127.0.0.1:{ops}/api/v1/devices   # id, token
  curl -s -X POST http://127.0.0.1:{s['lb_port']}/api/v1/devices/$ID/heartbeat -H "Authorization: Bearer $TOKEN" \\
       -H 'Content-Type: application/json' -d '{{"device_id":"'$ID'","timestamp":"'$(date -u +%FT%TZ)'"}}'
  {rel(run_bin(s))}/heartbeat-loadgen --gateway http://127.0.0.1:{s['lb_port']} --admin http://127.0.0.1:{ops} --devices 50 --interval 10 \\
       --duration {max(120, int(4 * (s['offline_after'] + 2 * s['scan_interval'])))} --silent-fraction 0.1 --offline-after {seconds_setting(s['offline_after'])} --scan-interval {seconds_setting(s['scan_interval'])}
Prometheus http://127.0.0.1:{s['prometheus_port']}/alerts   Alertmanager http://127.0.0.1:{s['alertmanager_port']}   HAProxy http://127.0.0.1:{s['lb_stats_port']}/stats
{"Alert notifications (webhook sink): " + rel(os.path.join(run, 'webhook-sink', 'notifications.jsonl')) if s['webhook_sink'] else "Alertmanager receivers have no integrations (--no-webhook-sink): see its UI"}
Stop: scripts/deployment.py stop{'' if s['profile'] == 'start' and run == os.path.join(ROOT, PROFILES['start']['run_dir']) else ' --run-dir ' + rel(run)}""")


# ---------------------------------------------------------------- webhook sink

def webhook_sink(port_, out_path):
    """Alertmanager's receivers post here: one JSON line per notification (time, receiver, alerts)."""
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/-/ready" else 404)
            self.end_headers()

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                doc = json.loads(body)
            except ValueError:
                doc = {"unparsed": body.decode(errors="replace")}
            line = json.dumps({"at": time.time(), "receiver": self.path.strip("/"), "status": doc.get("status"),
                               "alerts": [{"status": a.get("status"), "labels": a.get("labels", {})} for a in doc.get("alerts", [])]})
            with lock, open(out_path, "a") as f:
                f.write(line + "\n")
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port_), Handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    server.serve_forever()


# ---------------------------------------------------------------- the test

# Dashboard queries that may return no data in this test, each with why. Every other query of
# scripts/dashboard_queries.py must return at least one finite value over the test's time range.
MAY_BE_EMPTY = {
    # gateways' 5xx other than 503: the gateway never answers 500 to valid or invalid input, and
    # the killed gateway's in-flight requests get their 502 from HAProxy, not from a gateway
    'sum(rate(http_requests_total{job="heartbeat-ingest", status=~"5..", status!="503"}[5m])) / sum(rate(http_requests_total{job="heartbeat-ingest"}[5m]))':
        "no gateway 5xx other than 503 in a clean run",
    # no 4xx: every device registered, valid tokens and bodies, HEARTBEAT_MIN_INTERVAL_SECONDS=0 (no 429)
    'sum(rate(http_requests_total{job="heartbeat-ingest", status=~"4.."}[5m])) / sum(rate(http_requests_total{job="heartbeat-ingest"}[5m]))':
        "no 4xx from a well-behaved fleet",
}


class Watcher(harness.LeaderWatcher):
    """Every 0.1 s the leader (monitors' /readyz); every second Prometheus' and Alertmanager's alerts
    and whether a process died on its own."""

    def __init__(self, s, comps):
        super().__init__(threading.Event(), log)
        self.s, self.comps = s, comps
        self.prom = {}             # (alertname, instance) -> first pending/firing, last_firing, active_at, value, last_seen
        self.am = {}               # alertname -> first time seen in Alertmanager
        self.am_devices = {}       # device_id -> first time its DeviceOffline was seen
        self.last_slow = 0

    def monitors(self):
        return [c for c in self.comps if c.kind == "monitor"]

    def poll(self):
        lead = [m for m in self.monitors() if m.alive and readyz(int(m.env["ADMIN_PORT"]), 0.3)[1].get("leader") is True]
        self.note_leaders([m.name for m in lead if not m.expected_exit])  # one SIGKILLed since it answered is no leader
        if time.time() - self.last_slow < 1:
            return
        self.last_slow = time.time()
        self.note_crashes(self.comps, rel)
        self.poll_prometheus()
        self.poll_alertmanager()

    def poll_prometheus(self):
        data = http_json(f"http://127.0.0.1:{self.s['prometheus_port']}/api/v1/alerts", timeout=1)
        if not data:
            return
        now = time.time()
        for alert in data["data"]["alerts"]:
            key = (alert["labels"].get("alertname"), alert["labels"].get("instance", ""))
            entry = self.prom.setdefault(key, {})
            active_at = iso_epoch(alert.get("activeAt"))
            if alert["state"] not in entry or (alert["state"] == "firing" and active_at != entry.get("active_at")):
                entry.setdefault(alert["state"], now)
                if alert["state"] == "firing" or key[0] not in ("MonitorInstanceDown", "GatewayInstanceDown"):
                    log(f"prometheus: {key[0]}{'{' + key[1] + '}' if key[1] else ''} {alert['state']}")
            if alert["state"] == "firing":
                entry["last_firing"] = now
            entry["active_at"] = active_at
            try:
                entry["value"] = float(alert.get("value"))
            except (TypeError, ValueError):
                pass
            entry["last_seen"] = now

    def poll_alertmanager(self):
        status, text = http(f"http://127.0.0.1:{self.s['alertmanager_port']}/api/v2/alerts", timeout=1)
        if status != 200:
            return
        now = time.time()
        for alert in json.loads(text):
            name = alert["labels"].get("alertname")
            if name not in self.am:
                self.am[name] = now
                log(f"alertmanager: first {name} received")
            if name == "DeviceOffline":
                self.am_devices.setdefault(alert["labels"].get("device_id"), now)

    def firing(self, alertname, instance=None, within=1.5):
        """The alert's entry if it was seen firing in the last `within` seconds."""
        for (name, inst), entry in self.prom.items():
            if name == alertname and (instance is None or inst == instance) and entry.get("last_firing", 0) >= time.time() - within:
                return entry
        return None

    def fired_since(self, alertname, since, instance=None, value_above=None):
        """Fired because of something at `since`: an activation after it (Prometheus' activeAt), or,
        for an alert that was firing already, its value above `value_above`."""
        for (name, inst), entry in self.prom.items():
            if name != alertname or (instance is not None and inst != instance) or entry.get("last_firing", 0) < since:
                continue
            if (entry.get("active_at") or 0) >= since - 1:
                return entry
            if value_above is not None and entry.get("value", 0) > value_above:
                return entry
        return None


# Alerts that mean an outage of what the test keeps running (one leader, gateways, no storm, no
# loss): none may fire once Prometheus has settled.
MUST_NOT_FIRE = ("MonitorNoLeader", "MonitorTwoLeaders", "GatewayAllInstancesDown", "Gateway5xxShareHigh",
                 "MonitorStormGuardHolding", "MonitorHistoryRowsShed", "MonitorApplyErrors")


def prometheus_alerts(s):
    data = http_json(f"http://127.0.0.1:{s['prometheus_port']}/api/v1/alerts", timeout=2)
    return [a for a in data["data"]["alerts"] if a.get("state") == "firing"] if data else []


def startup_firing(s, since):
    result, _ = prom_query_range(s, 'ALERTS{alertstate="firing"}', since, time.time(), s["scrape_interval"])
    return sorted({series["metric"].get("alertname") for series in result or []})


def park_live_devices(s, live_ids, buckets):
    """Scores the live devices an hour ahead in the online sets (ZADD XX: never re-adds one), so the
    end of the load does not declare them offline while the loadgen audits (as scripts/chaos.py)."""
    updated = 0
    for _, _, argv in harness.park_commands(live_ids, buckets):
        out = redis_cli(s, *argv)
        updated += int(out) if out.isdigit() else 0
    return updated


def prom_query_range(s, expr, start, end, step):
    query = urllib.parse.urlencode({"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"})
    status, text = http(f"http://127.0.0.1:{s['prometheus_port']}/api/v1/query_range?{query}", timeout=10)
    try:
        doc = json.loads(text)
    except ValueError:
        return None, f"HTTP {status}: {text[:200]}"
    if doc.get("status") != "success":
        return None, f"{doc.get('errorType')}: {doc.get('error')}"
    return doc["data"]["result"], None


def dashboard_check(s, start, end):
    """Every dashboard query over [start, end]: (rows, problems). A query has data when some series
    has a finite value."""
    out = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "dashboard_queries.py")], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        return [], [f"scripts/dashboard_queries.py failed: {out.stderr.strip()}"]
    queries = [q for q in out.stdout.splitlines() if q.strip()]
    rows, problems = [], []
    for expr in queries:
        result, error = prom_query_range(s, expr, start, end, s["scrape_interval"])
        if error:
            rows.append(("ERROR", expr, error))
            problems.append(f"dashboard query failed: {expr}: {error}")
            continue
        finite = [series for series in result if any(math.isfinite(float(v)) for _, v in series["values"])]
        points = sum(sum(1 for _, v in series["values"] if math.isfinite(float(v))) for series in finite)
        if finite:
            rows.append(("data", expr, f"{len(finite)} series, {points} points"))
        elif expr in MAY_BE_EMPTY:
            rows.append(("empty", expr, f"allowed: {MAY_BE_EMPTY[expr]}"))
        else:
            rows.append(("NO DATA", expr, f"{len(result)} series, none with a finite value"))
            problems.append(f"dashboard query without data: {expr}")
    stale = [q for q in MAY_BE_EMPTY if q not in queries]
    for q in stale:
        problems.append(f"allow-list entry no longer a dashboard query (update MAY_BE_EMPTY): {q}")
    return rows, problems


def run_test(s, args):
    run = s["run_dir"]
    lock = harness.lock_run_dir(run, "deployment.lock")  # held until this returns
    if lock is None:
        log(f"ERROR: another deployment.py uses {rel(run)}: wait for it, or give --run-dir and ports")
        return 2
    state = {"comps": [], "loadgen": None, "watcher": None}
    exit_code = 2

    harness.raise_on_signals()
    try:
        previous = load_state(run)
        if previous:
            stop_all(previous, quiet=True)  # what an earlier, crashed test left behind
        exit_code = scenario(s, args, state)
    except BaseException as error:
        exit_code = harness.failure(error, log)
    finally:
        harness.ignore_signals()
        if state["watcher"] is not None:
            state["watcher"].stop_event.set()
        harness.stop_loadgen(state["loadgen"])
        t0 = time.time()
        stop_components(state["comps"] or stub_components(s))
        stop_all(s, quiet=True)
        log(f"everything stopped ({time.time() - t0:.1f} s); logs in {rel(run)}/logs")
    return exit_code


def scenario(s, args, state):
    run = s["run_dir"]
    buckets = int(s["monitor_env"].get("BUCKETS", "16"))
    loadgen_bin = os.path.join(run_bin(s), "heartbeat-loadgen")
    log(f"{'short' if args.short else 'full'} test: {args.devices} devices every {args.interval:g} s for {args.duration:g} s "
        f"({args.devices / args.interval:.0f} heartbeats/s) through HAProxy, {args.silent_fraction:.0%} silent at mid-run; "
        f"OFFLINE_AFTER_SECONDS {s['offline_after']:g}, SCAN_INTERVAL_SECONDS {s['scan_interval']:g}; run dir {rel(run)}")
    for sub in ("logs", "loadgen.log", "loadgen.json", "devices.tsv"):
        path = os.path.join(run, sub)
        shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else (os.path.exists(path) and os.remove(path))
    t_up = time.time()
    comps, urls, token = start_deployment(s, fresh=True)
    state["comps"] = comps
    startup_s = time.time() - t_up
    text, _, _ = table(s, comps)
    with print_lock:
        print(text, flush=True)
    by_name = {c.name: c for c in comps}
    monitors = [c for c in comps if c.kind == "monitor"]
    gateways = [c for c in comps if c.kind == "gateway"]
    # Prometheus 2.x evaluates rules at once but applies discovered targets on its first scrape
    # manager tick, ~5 s after it starts: until then absent(...) holds, so with `for:` scaled down
    # MonitorNoLeader and GatewayAllInstancesDown can fire while Prometheus itself starts (the
    # committed 2m / 1m cover that). The test starts from a settled Prometheus and reports those.
    t_settle = time.time()
    settled = wait_until(lambda: not [a for a in prometheus_alerts(s) if a["labels"].get("alertname") in MUST_NOT_FIRE], 30, poll=0.5)
    if not settled:
        raise HarnessError(f"Prometheus alerts still firing 30 s after the start: {[a['labels'] for a in prometheus_alerts(s)]}")
    startup_alerts = startup_firing(s, t_up)
    log(f"Prometheus settled after {time.time() - t_settle:.1f} s; fired while it started (before its first scrapes): "
        f"{', '.join(startup_alerts) or 'none'}")
    watcher = Watcher(s, comps)
    state["watcher"] = watcher
    watcher.start()
    if not wait_until(lambda: watcher.leader, 10):
        raise HarnessError("no leader seen by the watcher")
    standby = next(m for m in monitors if m.name != watcher.leader)

    devices_file, report_file = os.path.join(run, "devices.tsv"), os.path.join(run, "loadgen.json")
    argv = harness.loadgen_argv(loadgen_bin, [f"http://127.0.0.1:{s['lb_port']}"], f"http://127.0.0.1:{standby.env['ADMIN_PORT']}",
                                args.devices, args.interval, args.duration, args.silent_fraction, s["offline_after"], s["scan_interval"],
                                args.slack, devices_file, report_file, number=lambda v: f"{v:g}")
    log(f"loadgen (ops API of the standby {standby.name}, ADMIN_TOKEN from {rel(os.path.join(run, 'secrets', 'admin-token'))}): {' '.join(argv)}")
    loadgen = state["loadgen"] = harness.start_loadgen(argv, run, {"ADMIN_TOKEN": token, TAG: run}, os.path.join(run, "pids", "loadgen.pid"), "w")
    reader = LoadgenReader(loadgen, os.path.join(run, "loadgen.log"), log, args.verbose)
    reader.start()
    load_t0 = reader.wait_started(rel(reader.path))
    load_end = load_t0 + args.duration
    mid = args.duration / 2
    bound = s["offline_after"] + s["scan_interval"] + args.slack

    faults = []
    lock = threading.Lock()

    def gateway_kill(victim):
        """SIGKILL a gateway; HAProxy marks it down; Prometheus fires GatewayInstanceDown for its
        metrics target; start it again; HAProxy marks it up; the alert resolves."""
        instance = f"127.0.0.1:{victim.env['METRICS_PORT']}"
        before = dict(reader.latest)
        t0 = time.time()
        pid = victim.kill()
        log(f"FAULT gateway kill: SIGKILL {victim.name} (pid {pid})")
        down = wait_until(lambda: haproxy_servers(s).get(victim.name, "").startswith("DOWN"), 30, poll=0.1)
        down_s = time.time() - t0 if down else None
        fired = wait_until(lambda: watcher.fired_since("GatewayInstanceDown", t0, instance), 40, poll=0.2)
        fired_s = time.time() - t0 if fired else None
        log(f"  {victim.name}: HAProxy DOWN after {down_s and round(down_s, 2)} s, GatewayInstanceDown{{instance={instance}}} firing after "
            f"{fired_s and round(fired_s, 1)} s; starting it again")
        t1 = time.time()
        victim.start()
        ready = wait_until(victim.ready, 30, poll=0.1)
        ready_s = time.time() - t1 if ready else None
        up = wait_until(lambda: haproxy_servers(s).get(victim.name, "").startswith("UP"), 40, poll=0.2)
        up_s = time.time() - t1 if up else None
        time.sleep(1.5)  # answers in flight
        errors = errors_between(before, reader.latest)
        resolved = wait_until(lambda: not any(n == "GatewayInstanceDown" and i == instance and e.get("last_seen", 0) > time.time() - 1.5
                                              for (n, i), e in watcher.prom.items()), 30, poll=0.5)
        record = {"kind": "gateway kill", "victim": victim.name, "t": round(t0 - load_t0, 1), "haproxy_down_s": down_s and round(down_s, 2),
                  "alert_firing_s": fired_s and round(fired_s, 1), "ready_s": ready_s and round(ready_s, 2),
                  "haproxy_up_s": up_s and round(up_s, 1), "errors": errors, "error_count": sum(errors.values()),
                  "alert_resolved": bool(resolved)}
        log(f"  {victim.name} ready {record['ready_s']} s after its start, HAProxy UP after {record['haproxy_up_s']} s; loadgen answers other than 200 "
            f"from the kill until then: {errors or 'none'}; GatewayInstanceDown {'resolved' if resolved else 'NOT resolved'}")
        with lock:
            faults.append(record)

    def leader_kill():
        """SIGKILL the leader monitor; the standby leads; Prometheus fires MonitorLeaderChanged; the
        killed one is started again (same MONITOR_INSTANCE_ID) and stands by."""
        lead = wait_until(lambda: [m for m in monitors if m.name == watcher.leader and m.alive], 10, poll=0.05)
        if not lead:
            with lock:
                faults.append({"kind": "leader kill", "skipped": "no leader"})
            log("FAULT leader kill: no leader to kill (skipped)")
            return
        victim = lead[0]
        survivors = [m for m in monitors if m is not victim and m.alive]
        was_firing = watcher.firing("MonitorLeaderChanged")
        value_before = was_firing.get("value") if was_firing else None
        t0 = time.time()
        pid = victim.kill()
        taken = wait_until(lambda: [m for m in survivors if readyz(int(m.env["ADMIN_PORT"]), 0.3)[1].get("leader") is True], 30, poll=0.02)
        failover_s = time.time() - t0 if taken else None
        log(f"FAULT leader kill: SIGKILL {victim.name} (pid {pid}); {taken[0].name if taken else 'NO monitor'} leads after "
            f"{failover_s and round(failover_s, 2)} s")
        # new terms in 15 minutes: fires, or, firing since an earlier kill, its value goes up by one
        fired = wait_until(lambda: watcher.fired_since("MonitorLeaderChanged", t0, value_above=None if value_before is None else value_before + 0.5),
                           40, poll=0.2)
        fired_s = time.time() - t0 if fired else None
        value_after = fired.get("value") if fired else None
        time.sleep(max(0, t0 + args.restart_after - time.time()))
        victim.start()
        ready = wait_until(victim.ready, 30, poll=0.1)
        role = readyz(int(victim.env["ADMIN_PORT"]))[1].get("leader")
        record = {"kind": "leader kill", "victim": victim.name, "t": round(t0 - load_t0, 1), "failover_s": failover_s and round(failover_s, 2),
                  "new_leader": taken[0].name if taken else None, "alert_firing_s": fired_s and round(fired_s, 1),
                  "alert_already_firing": bool(was_firing), "value_before": value_before, "value_after": value_after,
                  "restarted_ready": bool(ready), "restarted_role": "leader" if role else "standby"}
        log(f"  MonitorLeaderChanged " + (f"(firing since an earlier change, value {value_before:.2f}) value {value_after or 0:.2f} after {record['alert_firing_s']} s"
                                          if was_firing else f"firing after {record['alert_firing_s']} s")
            + f"; {victim.name} started again (MONITOR_INSTANCE_ID {victim.env['MONITOR_INSTANCE_ID']}), "
            f"{'ready' if ready else 'NOT ready'}, {record['restarted_role']}")
        with lock:
            faults.append(record)

    # the schedule: a gateway kill before mid-run, the leader kill inside the silent devices'
    # detection window (the documented bound is OFFLINE_AFTER + failover + one scan); the full run
    # repeats both on other victims later
    schedule = [(0.15 * args.duration, "gateway kill", lambda: gateway_kill(gateways[1 % len(gateways)])),
                (mid + s["offline_after"] / 2, "leader kill", leader_kill)]
    if not args.short:
        schedule += [(0.65 * args.duration, "gateway kill", lambda: gateway_kill(gateways[2 % len(gateways)])),
                     (0.8 * args.duration, "leader kill", leader_kill)]
    schedule.sort(key=lambda x: x[0])
    log(f"load started; faults at " + ", ".join(f"{name} t={at:.1f}s" for at, name, _ in schedule)
        + f"; silent devices stop at t={mid:.0f}s (audit bound OFFLINE_AFTER + SCAN_INTERVAL + slack = {bound:g} s)")
    threads = []
    for at, name, fn in schedule:
        time.sleep(max(0, load_t0 + at - time.time()))
        if loadgen.poll() is not None:
            raise HarnessError(f"the loadgen exited ({loadgen.returncode}) during the load; see {rel(reader.path)}")
        thread = threading.Thread(target=fn, daemon=True, name=name)
        thread.start()
        threads.append(thread)

    # end of the load: park the live devices once their last heartbeats are in
    wait_until(lambda: os.path.exists(devices_file), 10)
    fleet, silent_ids, live_ids = harness.read_fleet(devices_file, args.silent_fraction)
    harness.park_at_end(load_end, lambda: park_live_devices(s, live_ids, buckets))
    log(f"load ended: {len(live_ids)} live devices parked an hour ahead in the online sets (nothing more is declared offline)")
    for thread in threads:
        thread.join(timeout=120)
        if thread.is_alive():
            raise HarnessError(f"fault '{thread.name}' did not finish")
    harness.wait_loadgen(loadgen, reader, 300)
    check_start = time.time()
    problems, checked, warnings = [], [], []

    # 1. the loadgen's audit
    report = harness.read_report(report_file)
    audit = report.get("audit", {})
    gw_kills = [f for f in faults if f["kind"] == "gateway kill"]
    leader_kills = [f for f in faults if f["kind"] == "leader kill" and not f.get("skipped")]
    kill_errors = sum(f["error_count"] for f in gw_kills)
    verdict = "PASSED" if audit.get("passed") else "FAILED"
    if loadgen.returncode not in (0, 3) or not audit:
        problems.append(f"the loadgen exited {loadgen.returncode} without an audit (see {rel(reader.path)})")
    elif not audit.get("passed"):
        # The one failure a SIGKILLed gateway may cause without losing anything: a heartbeat it
        # stored in Redis whose reply died with it (HAProxy answers 502; a device would simply beat
        # again) is in heartbeat_history but not counted as accepted. Tolerated only when that is
        # the audit's sole problem, everything else in it passed and the excess is at most the
        # answers lost at the kills; reported as a warning.
        only = audit.get("problems", [])
        match = re.fullmatch(r"history rows (\d+) != accepted heartbeats (\d+)", only[0]) if len(only) == 1 else None
        excess = int(match.group(1)) - int(match.group(2)) if match else 0
        if (match and 0 < excess <= kill_errors and audit.get("silent_ok") == audit.get("silent_checked")
                and audit.get("live_wrongly_offline") == 0):
            verdict = f"PASSED but for {excess} history rows more than accepted, explained by {kill_errors} answers lost at the gateway kills"
            warnings.append(f"{excess} heartbeats stored by a killed gateway whose replies were lost (HAProxy 502 or a closed connection): "
                            "in heartbeat_history, not counted as accepted by the loadgen (at-least-once; nothing lost)")
        else:
            problems.append("the loadgen's audit failed: " + "; ".join(only[:5]))
    checked.append(f"loadgen audit: {verdict} (silent with one timely offline "
                   f"{audit.get('silent_ok')}/{audit.get('silent_checked')}, live wrongly offline {audit.get('live_wrongly_offline')}/"
                   f"{audit.get('live_checked')}, history rows {audit.get('history_rows')} = accepted {audit.get('accepted')})")

    # 2. offline detection and the outbox, from PostgreSQL; the events on Kafka
    pg_url = urls["POSTGRES_URL"]
    detection = psql(pg_url, "SELECT count(*), min(extract(epoch FROM at - last_heartbeat)), max(extract(epoch FROM at - last_heartbeat)) "
                             "FROM device_status_events WHERE to_status = 'offline'")[0]
    drained = wait_until(lambda: psql(pg_url, "SELECT count(*) FROM outbox WHERE published_at IS NULL")[0][0] == "0", 30, poll=0.5)
    outbox_ids = {row[0] for row in psql(pg_url, "SELECT event_id FROM outbox")}
    if not drained:
        problems.append("outbox not drained 30 s after the load")
    kafka_note = "kcat not installed: Kafka not read"
    if shutil.which("kcat"):
        seen = []
        for topic in ("device.online", "device.offline"):
            out = subprocess.run(["kcat", "-C", "-b", urls["KAFKA_BROKERS"], "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%s\\n"],
                                 capture_output=True, text=True, timeout=60)
            for line in out.stdout.splitlines():
                try:
                    seen.append(json.loads(line)["event_id"])
                except (ValueError, KeyError, TypeError):
                    pass
        lost = outbox_ids - set(seen)
        if lost:
            problems.append(f"{len(lost)} outbox events not on Kafka")
        kafka_note = f"{len(set(seen))} distinct events on Kafka for {len(outbox_ids)} outbox rows, {len(lost)} missing"
    checked.append(f"events: outbox {'drained' if drained else 'NOT drained'}; {kafka_note}")

    # every accepted heartbeat in heartbeat_history, from PostgreSQL too (the loadgen's own count
    # goes through the ops API and is skipped once a device has a full page of rows); deduplicated
    # as the ops API reads it
    accepted = report.get("ok", 0)
    history = psql(pg_url, "SELECT count(*), (SELECT count(*) FROM (SELECT DISTINCT device_id, received_at, entry_id FROM heartbeat_history) x) "
                           "FROM heartbeat_history")[0]
    raw, distinct = int(history[0]), int(history[1])
    if not (accepted <= distinct <= accepted + kill_errors):
        problems.append(f"heartbeat_history holds {distinct} distinct heartbeats, accepted {accepted}"
                        + (" (LOST heartbeats)" if distinct < accepted else f" (more than the {kill_errors} answers lost at the gateway kills explain)"))
    checked.append(f"heartbeat_history (PostgreSQL): {distinct} distinct rows ({raw - distinct} raw duplicates) for {accepted} accepted heartbeats")

    # 3. Prometheus' alerts
    divisor = s["alert_timers_divisor"]
    rules_note = (f"a copy of deploy/prometheus/rules.yml with every `for:` divided by {divisor}, "
                  f"{rel(os.path.join(run, 'prometheus', 'rules.yml'))}" if divisor > 1 else "deploy/prometheus/rules.yml as committed")
    if len(gw_kills) != sum(1 for _, n, _ in schedule if n == "gateway kill") or len(leader_kills) != sum(1 for _, n, _ in schedule if n == "leader kill"):
        problems.append(f"faults did not all run: {faults}")
    for f in gw_kills:
        if f["alert_firing_s"] is None:
            problems.append(f"GatewayInstanceDown did not fire for the killed {f['victim']}")
        if f["haproxy_down_s"] is None or f["haproxy_up_s"] is None:
            problems.append(f"HAProxy did not mark {f['victim']} down and up again ({f})")
        if not f["alert_resolved"]:
            problems.append(f"GatewayInstanceDown for {f['victim']} did not resolve after its restart")
    for f in leader_kills:
        if f["failover_s"] is None:
            problems.append(f"no standby took over after {f['victim']} was killed")
        if f["alert_firing_s"] is None:
            problems.append(f"MonitorLeaderChanged did not fire (or rise) after the leader kill at t={f['t']}s")
        if not f["restarted_ready"]:
            problems.append(f"{f['victim']} not ready after its restart")
    if leader_kills and leader_kills[0]["alert_already_firing"]:
        problems.append("MonitorLeaderChanged was already firing before the first leader kill (it must fire because of it)")
    must_not_fire = MUST_NOT_FIRE
    fired = sorted({name for (name, _), e in watcher.prom.items() if "firing" in e})
    for name in must_not_fire:
        if name in fired:
            problems.append(f"Prometheus fired {name}")
    other_fired = [n for n in fired if n not in ("GatewayInstanceDown", "MonitorLeaderChanged")]
    other_pending = sorted({name for (name, _), e in watcher.prom.items() if "firing" not in e} - set(fired))
    checked.append(f"Prometheus: GatewayInstanceDown fired {[f['alert_firing_s'] for f in gw_kills]} s after each gateway kill and resolved; "
                   f"MonitorLeaderChanged fired (or, already firing, rose) {[f['alert_firing_s'] for f in leader_kills]} s after each leader kill; none of {', '.join(must_not_fire)}; other alerts that fired: {', '.join(other_fired) or 'none'}, "
                   f"only pending: {', '.join(other_pending) or 'none'}; while Prometheus started: {', '.join(startup_alerts) or 'none'} (rules: {rules_note})")

    # 4. Alertmanager: both sources; DeviceOffline for every silent device, none for a live one
    am_alerts = []
    status, text = http(f"http://127.0.0.1:{s['alertmanager_port']}/api/v2/alerts", timeout=5)
    if status == 200:
        am_alerts = json.loads(text)
    offline_now = {a["labels"].get("device_id") for a in am_alerts if a["labels"].get("alertname") == "DeviceOffline"}
    missing = [d for d in silent_ids if d not in offline_now]
    wrong = [d for d in live_ids if d in watcher.am_devices or d in offline_now]
    if missing:
        problems.append(f"{len(missing)} silent devices without a DeviceOffline alert in Alertmanager (e.g. {missing[0]})")
    if wrong:
        problems.append(f"{len(wrong)} live devices got a DeviceOffline alert (e.g. {wrong[0]})")
    for name in ("GatewayInstanceDown", "MonitorLeaderChanged"):
        if name not in watcher.am:
            problems.append(f"Alertmanager never received {name} from Prometheus")
    if "FleetMassOffline" in watcher.am:
        problems.append("Alertmanager received FleetMassOffline (the storm guard tripped)")
    checked.append(f"Alertmanager: DeviceOffline for {len(silent_ids) - len(missing)}/{len(silent_ids)} silent devices, "
                   f"{len(wrong)} live; from Prometheus: {', '.join(n for n in sorted(watcher.am) if n != 'DeviceOffline')}")

    # 5. notifications routed as the committed routes say (webhook sink)
    routed = {}
    if s["webhook_sink"]:
        expected_routes = {"DeviceOffline": "slack-devices", "GatewayInstanceDown": "slack-ops", "MonitorLeaderChanged": "default-webhook"}

        def notifications():
            got = {}
            try:
                for line in open(os.path.join(run, "webhook-sink", "notifications.jsonl")):
                    doc = json.loads(line)
                    for alert in doc["alerts"]:
                        got.setdefault(alert["labels"].get("alertname"), set()).add(doc["receiver"])
                        if alert["labels"].get("alertname") == "DeviceOffline":
                            got.setdefault("devices", set()).add(alert["labels"].get("device_id"))
            except (OSError, ValueError):
                pass
            return got
        routed = wait_until(lambda: (lambda g: g if all(r in g.get(a, ()) for a, r in expected_routes.items())
                                     and set(silent_ids) <= g.get("devices", set()) else None)(notifications()), 20, poll=0.5) or notifications()
        for alertname, receiver in expected_routes.items():
            if receiver not in routed.get(alertname, set()):
                problems.append(f"no {alertname} notification reached receiver {receiver} (got {sorted(routed.get(alertname, []))})")
        notified = len(set(silent_ids) & routed.get("devices", set()))
        if notified != len(silent_ids):
            problems.append(f"DeviceOffline notifications for {notified}/{len(silent_ids)} silent devices")
        checked.append("routing (webhook sink): " + ", ".join(f"{a} → {', '.join(sorted(routed.get(a, []))) or 'nothing'}" for a in expected_routes)
                       + f"; DeviceOffline notifications for {notified}/{len(silent_ids)} silent devices")

    # 6. HAProxy: every gateway back up and each one carried heartbeats
    servers = haproxy_servers(s)
    if not servers or not all(v.startswith("UP") for v in servers.values()):
        problems.append(f"HAProxy gateways not all UP at the end: {servers}")
    per_server, lb_5xx = {}, {}
    try:
        for line in open(by_name["haproxy"].log_path, errors="replace"):
            match = re.search(r" gateways/(\S+) \S+ (\d{3}) ", line)
            if match:
                per_server[match.group(1)] = per_server.get(match.group(1), 0) + 1
                if match.group(2).startswith("5"):
                    key = f"{match.group(1)}:{match.group(2)}"
                    lb_5xx[key] = lb_5xx.get(key, 0) + 1
    except OSError:
        pass
    idle = [g.name for g in gateways if per_server.get(g.name, 0) == 0]
    if idle:
        problems.append(f"HAProxy sent no heartbeats to {', '.join(idle)}")
    checked.append(f"HAProxy: {', '.join(f'{k} {v}' for k, v in sorted(servers.items()))}; requests per gateway "
                   f"{dict(sorted(per_server.items()))}; 5xx in its log {lb_5xx or 'none'}")

    # 7. the dashboard
    rows, dash_problems = dashboard_check(s, load_t0 - 5, time.time())
    problems += dash_problems
    with print_lock:
        print("dashboard queries (range over the test, step "
              f"{s['scrape_interval']:g} s):\n" + "\n".join(f"  {r[0]:8} {r[1][:110]}{'…' if len(r[1]) > 110 else ''}  [{r[2]}]" for r in rows), flush=True)
    n_data = sum(1 for r in rows if r[0] == "data")
    n_empty = sum(1 for r in rows if r[0] == "empty")
    checked.append(f"dashboard: {n_data}/{len(rows)} queries returned data, {n_empty} empty on the allow-list, "
                   f"{len(rows) - n_data - n_empty} failed")

    # 8. crashes
    for t, name, code in watcher.crashes:
        problems.append(f"{name} crashed (exit {code}) at {stamp(t)}")
    checked.append(f"processes: {len(watcher.crashes)} crashes; leadership changes seen {sum(1 for _, who in watcher.changes[1:] if who)}, "
                   f"both reporting leader in {watcher.both_leading} polls")
    if watcher.both_leading:
        problems.append(f"two monitors reported leader:true at once in {watcher.both_leading} polls")

    # summary
    lat = report.get("latency_ms", {})
    lines = [
        f"deployment test summary ({'short' if args.short else 'full'}: {args.devices} devices every {args.interval:g} s for {args.duration:g} s "
        f"through HAProxy to {len(gateways)} gateways, {len(silent_ids)} silent at mid-run; {len(monitors)} monitors; "
        f"startup {startup_s:.1f} s, checks {time.time() - check_start:.1f} s); build: {s.get('build')}",
        f"  heartbeats: sent {report.get('sent')}, accepted {report.get('ok')} ({report.get('requests_per_second', 0):.0f}/s), "
        f"by status {report.get('by_status')}, transport errors {report.get('transport_errors')}; latency p50 {lat.get('p50', 0):.1f} ms, "
        f"p99 {lat.get('p99', 0):.1f} ms, max {lat.get('max', 0):.0f} ms",
    ]
    for f in gw_kills:
        lines.append(f"  gateway kill t={f['t']}s ({f['victim']}): answers other than 200 seen by the loadgen {f['error_count']}"
                     + (f" {f['errors']}" if f["errors"] else "") + ", "
                     f"HAProxy down after {f['haproxy_down_s']} s, GatewayInstanceDown firing after {f['alert_firing_s']} s, "
                     f"restarted: ready {f['ready_s']} s, HAProxy up after {f['haproxy_up_s']} s")
    for f in leader_kills:
        lines.append(f"  leader kill t={f['t']}s ({f['victim']}): failover {f['failover_s']} s to {f['new_leader']}, MonitorLeaderChanged "
                     + (f"value {f['value_before']:.2f} → {f['value_after'] or 0:.2f} after {f['alert_firing_s']} s (firing since the earlier kill)"
                        if f["alert_already_firing"] else f"firing after {f['alert_firing_s']} s")
                     + f", restarted as {f['restarted_role']}")
    lines.append(f"  offline detection (server time, last heartbeat → device.offline): {detection[0]} events, "
                 f"{float(detection[1] or 0):.2f}–{float(detection[2] or 0):.2f} s, bound {bound:g} s")
    lines.append("  checked:")
    lines += [f"    - {c}" for c in checked]
    return harness.conclude(lines, warnings, problems, [rel(os.path.join(run, "logs")) + "/", rel(reader.path),
                                                        rel(os.path.join(run, "redis", "redis.log")), rel(os.path.join(run, "pg", "pg.log"))],
                            T_START, limit=40)


# ---------------------------------------------------------------- main

def main():
    settings = argparse.ArgumentParser(add_help=False)
    g = settings.add_argument_group("deployment settings (defaults differ per command: start / test / test --short)")
    g.add_argument("--run-dir", help="state, configuration, pid files and logs (default .run/deployment; test: .run/deployment-test, "
                                     "--short: .run/deployment-test-short)")
    g.add_argument("--bin", default=os.path.join(ROOT, ".build", "debug"), help="directory of heartbeat-ingest, -monitor, -loadgen (default .build/debug)")
    g.add_argument("--redis-port", type=port, help="Redis (6393; test 6394, --short 6395)")
    g.add_argument("--pg-port", type=port, help="PostgreSQL (5443; test 5444, --short 5445)")
    for name, (default, text) in HTTP_PORTS.items():
        shown = ",".join(map(str, default)) if isinstance(default, list) else str(default)
        g.add_argument("--" + name.replace("_", "-"), type=port_list if isinstance(default, list) else port,
                       help=f"{text}; default {shown} (test +10000, --short +4000)")
    g.add_argument("--offline-after", type=float, help="OFFLINE_AFTER_SECONDS of the monitors (30; test 2)")
    g.add_argument("--scan-interval", type=float, help="SCAN_INTERVAL_SECONDS (5; test 0.5)")
    g.add_argument("--alert-resend", type=float, help="ALERT_RESEND_SECONDS (10; test 2)")
    g.add_argument("--heartbeat-min-interval", type=float, help="HEARTBEAT_MIN_INTERVAL_SECONDS of the gateways (1; test 0: its devices beat every 0.5 s)")
    g.add_argument("--leader-redis-timeout", type=float, help="LEADER_REDIS_TIMEOUT_SECONDS (unset: the default 10; test 1)")
    g.add_argument("--reconcile-interval", type=float, help="RECONCILE_INTERVAL_SECONDS (unset: the default 300; test 5)")
    g.add_argument("--scrape-interval", type=float, help="Prometheus' scrape and evaluation interval, seconds (1)")
    g.add_argument("--alert-timers-divisor", type=int,
                   help="divide the rules' `for:` and Alertmanager's group_wait/group_interval/repeat_interval by this (1: as committed; test 60)")
    g.add_argument("--gateway-env", type=env_pair, action="append", metavar="NAME=VALUE", help="any other gateway setting (README), repeatable")
    g.add_argument("--monitor-env", type=env_pair, action="append", metavar="NAME=VALUE", help="any other monitor setting (README), repeatable")
    g.add_argument("--log-level", default="info", help="LOG_LEVEL of gateways and monitors (info)")
    g.add_argument("--no-webhook-sink", action="store_true", help="Alertmanager receivers without integrations instead of the local sink")
    g.add_argument("--kafka-mock-args", help="KAFKA_MOCK_ARGS for the Kafka mock, e.g. '--partitions 6'")

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_start = sub.add_parser("start", parents=[settings], help="bring the deployment up")
    p_start.add_argument("--fresh", action="store_true", help="remove Redis's data, the PostgreSQL schema, Prometheus' and Alertmanager's data first")
    p_stop = sub.add_parser("stop", help="stop everything of a deployment")
    p_stop.add_argument("--run-dir", help="default .run/deployment")
    p_status = sub.add_parser("status", help="what runs")
    p_status.add_argument("--run-dir", help="default .run/deployment")
    p_test = sub.add_parser("test", parents=[settings], help="the integration test")
    p_test.add_argument("--short", action="store_true", help="the ~90 s version for make test")
    p_test.add_argument("--devices", type=int, help="fleet size (150; --short 100)")
    p_test.add_argument("--interval", type=float, default=0.5, help="seconds between a device's heartbeats (0.5)")
    p_test.add_argument("--duration", type=float, help="load run length, seconds (180; --short 40)")
    p_test.add_argument("--silent-fraction", type=float, default=0.1, help="share of the fleet that stops at mid-run (0.1)")
    p_test.add_argument("--slack", type=float, default=2.0, help="audit slack beyond OFFLINE_AFTER + SCAN_INTERVAL, covering the leader kill (2)")
    p_test.add_argument("--restart-after", type=float, default=4.0, help="seconds before a killed monitor is started again (4)")
    p_test.add_argument("--verbose", action="store_true", help="every loadgen progress line (default: every 5 s)")
    p_sink = sub.add_parser("_webhook-sink")
    p_sink.add_argument("--port", type=port, required=True)
    p_sink.add_argument("--out", required=True)
    args = parser.parse_args()

    if args.command == "_webhook-sink":
        webhook_sink(args.port, args.out)
        return 0

    if args.command in ("stop", "status"):
        run = os.path.abspath(args.run_dir or os.path.join(ROOT, PROFILES["start"]["run_dir"]))
        s = load_state(run)
        if s is None:
            print(f"deployment.py: no deployment recorded in {rel(run)} ({STATE} missing)")
            return 0 if args.command == "stop" else 3
        if args.command == "stop":
            stop_all(s)
            return 0
        text, running, total = table(s)
        print(text)
        print(f"{running}/{total} running (run dir {rel(run)}; executables {rel(run_bin(s))}: {s.get('build', '?')})")
        return 0 if running == total else 3

    if args.command == "start":
        s = resolve(args, "start")
        try:
            comps, _, _ = start_deployment(s, fresh=args.fresh)
        except HarnessError as error:
            log(f"ERROR: {error}")
            log("stopping what runs of this deployment")
            stop_all(s)
            return 2
        except KeyboardInterrupt:
            log("interrupted: stopping what runs of this deployment")
            stop_all(s)
            return 130
        text, _, _ = table(s, comps)
        print(text)
        print_start_help(s)
        return 0

    # test
    profile = "test-short" if args.short else "test"
    args.devices = args.devices or (100 if args.short else 150)
    args.duration = args.duration or (40.0 if args.short else 180.0)
    if args.duration < 30:
        parser.error("--duration must be at least 30 s to fit the faults")
    s = resolve(args, profile)
    return run_test(s, args)


if __name__ == "__main__":
    sys.exit(main())
