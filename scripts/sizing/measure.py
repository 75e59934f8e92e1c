#!/usr/bin/env python3
"""Sizing figures of docs/operations.md ("Sizing"), measured on this machine.

Runs the gateway and one monitor (built binaries, copied first so a rebuild cannot swap them
mid-run) against private Redis, PostgreSQL and the Kafka mock (scripts/services.sh in their own run
directory and ports), then:

  1. registers --devices devices through the ops API           -> Redis and PostgreSQL per registered device
  2. with the monitor stopped, two heartbeats per device      -> Redis per online device, per waiting
                                                                  history and transitions entry
  3. Kafka brokers down, monitor started: every device's online transition applied into the outbox;
     brokers up                                               -> events per second the relay publishes
  4. --beat-seconds of paced heartbeats (wrk) from all devices but --silent of them, which go
     offline meanwhile (OFFLINE_AFTER_SECONDS=90)            -> heartbeat_history bytes per row, WAL
                                                                  per heartbeat, bytes per status event,
                                                                  outbox row and replay key
  5. FLUSHALL with the monitor leading                         -> registry re-seed time
  6. extrapolates to a day of 10,000 devices beating once a minute, prints a Markdown table and
     writes it with the raw figures (JSON) to the run directory.

usage: python3 scripts/sizing/measure.py [--devices 10000] [--beat-seconds 120] [--keep]
  (~2.5 minutes; environment: HEARTBEAT_RUN_DIR (default .run/sizing), REDIS_PORT (6397),
  PG_PORT (5447); the services are stopped at the end unless --keep). Needs redis-server,
  postgresql and wrk (Debian packages) and a build (.build/release, else .build/debug; --bin DIR).
  Nothing else may use the run directory or the ports meanwhile: Redis is flushed and the database
  heartbeat_sizing recreated.
"""
import argparse
import datetime
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--devices", type=int, default=10_000)
parser.add_argument("--silent", type=int, default=1_000, help="devices that stop beating in step 4")
parser.add_argument("--beat-seconds", type=int, default=120)
parser.add_argument("--connections", type=int, default=8, help="wrk connections in step 4")
parser.add_argument("--pause-ms", type=int, default=15, help="wrk pause per request and connection in step 4")
parser.add_argument("--bin", default=None, help="directory of the built executables (default: .build/release, else .build/debug)")
parser.add_argument("--gateway-port", type=int, default=18480)
parser.add_argument("--admin-port", type=int, default=18481)
parser.add_argument("--keep", action="store_true", help="leave the services running")
args = parser.parse_args()

RUN = os.path.abspath(os.environ.get("HEARTBEAT_RUN_DIR", os.path.join(REPO, ".run", "sizing")))
REDIS_PORT = os.environ.get("REDIS_PORT", "6397")
PG_PORT = os.environ.get("PG_PORT", "5447")
SERVICES_ENV = dict(os.environ, HEARTBEAT_RUN_DIR=RUN, REDIS_PORT=REDIS_PORT, PG_PORT=PG_PORT)
DATABASE = "heartbeat_sizing"
PG_URL = f"postgres://heartbeat@127.0.0.1:{PG_PORT}/{DATABASE}"
ADMIN_TOKEN = secrets.token_hex(16)
PLAYLIST = "7d2f0c4e-8a7b-4c3e-9f11-2b6a5d9e0c17"
started_at = time.time()
figures = {}


def log(message):
    print(f"[{time.time() - started_at:6.1f}s] {message}", file=sys.stderr, flush=True)


def sh(*command, env=None, check=True, input=None):
    done = subprocess.run(command, env=env, input=input, capture_output=True, text=True)
    if check and done.returncode != 0:
        sys.exit(f"{' '.join(command[:4])} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def redis(*command):
    return sh("redis-cli", "-p", REDIS_PORT, *command).strip()


def redis_many(commands):
    """Runs one command per line through one redis-cli; returns one reply line each."""
    out = sh("redis-cli", "-p", REDIS_PORT, input="\n".join(commands) + "\n")
    return out.splitlines()


def used_memory():
    return int(re.search(r"^used_memory:(\d+)", redis("INFO", "memory"), re.M).group(1))


def psql(sql, database=DATABASE):
    return sh("psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", PG_PORT, "-U", "heartbeat", "-d", database, "-c", sql).strip()


def metrics(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    values = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, _, value = line.rpartition(" ")
        try:
            values[name] = float(value)
        except ValueError:
            pass
    return values


def metric(port, name):
    return sum(v for k, v in metrics(port).items() if k == name or k.startswith(name + "{"))


def accepted_heartbeats():
    return sum(v for k, v in metrics(args.gateway_port).items() if k.startswith("heartbeat_outcomes_total{") and 'outcome="ok"' in k)


def get_json(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", path)
    reply = conn.getresponse()
    return reply.status, json.loads(reply.read() or b"null")


def wait_until(what, predicate, timeout, poll=0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if predicate():
                return
        except (OSError, http.client.HTTPException, ValueError):
            pass
        time.sleep(poll)
    sys.exit(f"timed out after {timeout} s waiting for {what}")


def buckets():
    return int(redis("GET", "hb:config:buckets") or 16)


def bucket_of(device):
    """KeySchema.bucket(of:): FNV-1a (32 bits) of the lowercase id, modulo BUCKETS."""
    h = 2166136261
    for byte in device.encode():
        h = ((h ^ byte) * 16777619) & 0xFFFFFFFF
    return h % buckets()


def stream_memory(kind):
    keys = [f"hb:{{{b}}}:{kind}" for b in range(buckets())]
    sizes = redis_many([f"MEMORY USAGE {k} SAMPLES 0" for k in keys])
    lengths = redis_many([f"XLEN {k}" for k in keys])
    return sum(int(s or 0) for s in sizes), sum(int(n or 0) for n in lengths)


def entries_added(kind):
    total = 0
    for b in range(buckets()):
        reply = redis_many([f"XINFO STREAM hb:{{{b}}}:{kind}"])
        for i, line in enumerate(reply):
            if line == "entries-added":
                total += int(reply[i + 1])
    return total


# ---------------------------------------------------------------- services and binaries

def services(action):
    return sh(os.path.join(REPO, "scripts", "services.sh"), action, env=SERVICES_ENV)


log(f"services in {RUN} (Redis {REDIS_PORT}, PostgreSQL {PG_PORT}, Kafka mock)")
services("start")
service_env = dict(re.findall(r"^export (\w+)=(\S+)$", services("env"), re.M))
KAFKA_BROKERS = service_env["KAFKA_BROKERS"]
KAFKA_PID = int(open(os.path.join(RUN, "kafka", "kafka.pid")).read().strip())
KAFKA_OUT = os.path.join(RUN, "kafka", "kafka.out")

redis("FLUSHALL")
psql(f"DROP DATABASE IF EXISTS {DATABASE}", database="postgres")
psql(f"CREATE DATABASE {DATABASE} OWNER heartbeat", database="postgres")
# scripts/services.sh runs PostgreSQL with full_page_writes=off (tests); WAL is measured as production writes it
psql("ALTER SYSTEM SET full_page_writes = on", database="postgres")
psql("SELECT pg_reload_conf()", database="postgres")
versions = {
    "redis": redis("INFO", "server").split("redis_version:")[1].split()[0],
    "postgresql": psql("SHOW server_version", database="postgres"),
}

source = args.bin or next(
    d for d in (os.path.join(REPO, ".build", "release"), os.path.join(REPO, ".build", "debug"))
    if os.path.exists(os.path.join(d, "heartbeat-monitor")))
BIN = os.path.join(RUN, "bin")
os.makedirs(BIN, exist_ok=True)
for name in ("heartbeat-ingest", "heartbeat-monitor"):
    shutil.copy2(os.path.join(source, name), os.path.join(BIN, name))
versions["binaries"] = f"{source} ({sh(os.path.join(BIN, 'heartbeat-monitor'), '--version').strip()}, built " + \
    datetime.datetime.fromtimestamp(os.path.getmtime(os.path.join(source, "heartbeat-monitor")), datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC") + ")"
log(f"binaries {versions['binaries']}")

common_env = dict(os.environ, REDIS_URL=f"redis://127.0.0.1:{REDIS_PORT}", BUCKETS="16", LOG_FORMAT="json", LOG_LEVEL="info")
gateway_env = dict(common_env, HTTP_HOST="127.0.0.1", HTTP_PORT=str(args.gateway_port))
monitor_env = dict(
    common_env, POSTGRES_URL=PG_URL, KAFKA_BROKERS=KAFKA_BROKERS, ADMIN_TOKEN=ADMIN_TOKEN, ADMIN_HOST="127.0.0.1",
    ADMIN_PORT=str(args.admin_port), OFFLINE_AFTER_SECONDS="90", SCAN_INTERVAL_SECONDS="5", MONITOR_INSTANCE_ID="sizing")
processes = {}


def start(name, env):
    logfile = open(os.path.join(RUN, f"{name}.log"), "a")
    processes[name] = subprocess.Popen([os.path.join(BIN, name)], env=env, stdout=logfile, stderr=logfile)


def stop(name):
    process = processes.pop(name, None)
    if process and process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def is_leader():
    status, body = get_json(args.admin_port, "/readyz")
    return status == 200 and body["leader"]


def kafka(signal_number, line):
    before = open(KAFKA_OUT).read().count(line)
    os.kill(KAFKA_PID, signal_number)
    wait_until(f"kafka mock: {line}", lambda: open(KAFKA_OUT).read().count(line) > before, 15)


try:
    start("heartbeat-monitor", monitor_env)
    start("heartbeat-ingest", gateway_env)
    wait_until("monitor leads", is_leader, 60)
    wait_until("gateway ready", lambda: get_json(args.gateway_port, "/readyz")[0] == 200, 30)
    time.sleep(2)
    memory_empty = used_memory()

    # ------------------------------------------------------------ 1. registration
    log(f"registering {args.devices} devices through the ops API")
    devices = [None] * args.devices

    def register(part, of):
        conn = http.client.HTTPConnection("127.0.0.1", args.admin_port, timeout=30)
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
        for i in range(part, args.devices, of):
            conn.request("POST", "/api/v1/devices", json.dumps({"name": f"sizing-{i:05d}"}), headers)
            reply = conn.getresponse()
            body = reply.read()
            if reply.status != 201:
                raise SystemExit(f"registration {i}: {reply.status} {body!r}")
            device = json.loads(body)
            devices[i] = (device["id"], device["token"])

    began = time.time()
    threads = [threading.Thread(target=register, args=(part, 4)) for part in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    figures["registrations_per_second"] = args.devices / (time.time() - began)
    devices_file = os.path.join(RUN, "devices.tsv")
    with open(devices_file, "w") as out:
        out.writelines(f"{i}\t{t}\n" for i, t in devices)
    time.sleep(1)
    memory_registered = used_memory()
    history0, _ = stream_memory("history")
    transitions0, _ = stream_memory("transitions")
    figures["redis_bytes_per_registered_device"] = (memory_registered - memory_empty) / args.devices
    sample = devices[:: max(1, args.devices // 500)]

    def device_hash_bytes():
        return statistics.mean(int(n) for n in redis_many([f"MEMORY USAGE hb:{{{bucket_of(i)}}}:dev:{i}" for i, _ in sample]))

    figures["redis_registered_hash_memory_usage"] = device_hash_bytes()
    figures["pg_devices_bytes_per_registered_device"] = int(psql("SELECT pg_total_relation_size('devices')")) / args.devices
    log(f"registered: {figures['registrations_per_second']:.0f}/s, Redis {figures['redis_bytes_per_registered_device']:.0f} B/device")

    # ------------------------------------------------------------ 2. heartbeats, monitor stopped
    stop("heartbeat-monitor")
    body_template = ('{"device_id":"%s","timestamp":"%s","current_playlist":"' + PLAYLIST +
                     '","storage_status":{"total_gb":64,"used_gb":23.5},"network_status":"wifi","player_version":"4.12.3"}')

    def beat_once(part, of, failures):
        conn = http.client.HTTPConnection("127.0.0.1", args.gateway_port, timeout=30)
        for i in range(part, args.devices, of):
            device, token = devices[i]
            stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            conn.request("POST", f"/api/v1/devices/{device}/heartbeat", body_template % (device, stamp),
                         {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
            reply = conn.getresponse()
            reply.read()
            if reply.status != 200:
                failures.append(reply.status)

    def beat_round():
        failures = []
        threads = [threading.Thread(target=beat_once, args=(part, 4, failures)) for part in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if failures:
            sys.exit(f"{len(failures)} heartbeats refused: {sorted(set(failures))}")

    log("one heartbeat per device, monitor stopped")
    beat_round()
    time.sleep(1)
    memory_beat1 = used_memory()
    history1, history_len1 = stream_memory("history")
    transitions1, transitions_len = stream_memory("transitions")
    online_sets = sum(int(n or 0) for n in redis_many([f"MEMORY USAGE hb:{{{b}}}:online SAMPLES 0" for b in range(buckets())]))
    figures["redis_online_hash_memory_usage"] = device_hash_bytes()
    figures["redis_online_set_bytes_per_device"] = online_sets / args.devices
    figures["redis_bytes_per_transition_entry"] = (transitions1 - transitions0) / transitions_len
    # what an online device costs beyond a registered one, streams excluded
    figures["redis_bytes_per_online_device"] = figures["redis_bytes_per_registered_device"] + (
        memory_beat1 - memory_registered - (history1 - history0) - (transitions1 - transitions0)) / args.devices
    log("a second heartbeat per device")
    beat_round()
    time.sleep(1)
    history2, history_len2 = stream_memory("history")
    figures["redis_bytes_per_history_entry"] = (history2 - history1) / (history_len2 - history_len1)
    figures["history_entries_waiting"] = history_len2
    log(f"history entry {figures['redis_bytes_per_history_entry']:.0f} B, transition entry {figures['redis_bytes_per_transition_entry']:.0f} B")

    # ------------------------------------------------------------ 3. publish rate
    kafka(signal.SIGUSR1, "brokers down")
    start("heartbeat-monitor", monitor_env)
    began = time.time()
    wait_until("monitor leads", is_leader, 60)
    wait_until("transitions applied", lambda: metric(args.admin_port, "monitor_transitions_applied_total") >= args.devices, 120, 0.1)
    figures["apply_seconds_for_all"] = time.time() - began
    wait_until("outbox holds every event", lambda: int(psql("SELECT count(*) FROM outbox WHERE published_at IS NULL")) >= args.devices, 60)
    figures["outbox_waiting"] = int(psql("SELECT count(*) FROM outbox WHERE published_at IS NULL"))
    figures["outbox_alerted_at_null"] = int(psql("SELECT count(*) FROM outbox WHERE alerted_at IS NULL"))
    log(f"{figures['outbox_waiting']} events wait in the outbox; brokers up")
    kafka(signal.SIGUSR2, "brokers up")
    up_at = time.time()
    samples = []
    while True:
        published = metric(args.admin_port, "monitor_events_published_total")
        samples.append((time.time(), published))
        if published >= figures["outbox_waiting"] or time.time() - up_at > 120:
            break
        time.sleep(0.05)
    first = next(t for t, p in samples if p > 0)
    last = samples[-1][0]
    figures["outbox_drain_seconds_after_brokers_up"] = last - up_at
    figures["events_published_per_second"] = samples[-1][1] / max(last - first, 0.05)
    log(f"published {samples[-1][1]:.0f} in {last - first:.2f} s after the first ({figures['events_published_per_second']:.0f}/s)")
    wait_until("history written", lambda: int(psql("SELECT count(*) FROM heartbeat_history")) >= history_len2, 120)
    pg_activity = psql("SELECT application_name || '=' || count(*) FROM pg_stat_activity WHERE datname = current_database() GROUP BY application_name ORDER BY 1")
    figures["pg_connections_leader"] = pg_activity.replace("\n", ", ")
    figures["redis_clients"] = int(re.search(r"connected_clients:(\d+)", redis("INFO", "clients")).group(1)) - 1

    # ------------------------------------------------------------ 4. steady heartbeats
    beating = args.devices - args.silent
    rows_before = int(psql("SELECT count(*) FROM heartbeat_history"))
    ok_before = accepted_heartbeats()
    wal_before = psql("SELECT pg_current_wal_lsn()")
    log(f"{args.beat_seconds} s of heartbeats from {beating} devices ({args.silent} fall silent)")
    wrk = sh("wrk", "-t1", f"-c{args.connections}", f"-d{args.beat_seconds}s", "-s", os.path.join(REPO, "deploy", "loadtest", "heartbeat.lua"),
             f"http://127.0.0.1:{args.gateway_port}", "--", devices_file, str(beating), str(args.pause_ms), "player")
    beats = accepted_heartbeats() - ok_before
    figures["steady_refused"] = sum(v for k, v in metrics(args.gateway_port).items()
                                    if k.startswith("heartbeat_outcomes_total{") and 'outcome="ok"' not in k)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", wrk)
    figures["steady_wrk_non_2xx"] = int(non2xx.group(1)) if non2xx else 0
    figures["steady_heartbeats"] = beats
    figures["steady_rate"] = beats / args.beat_seconds
    expected_rows = entries_added("history")
    wait_until("history written", lambda: int(psql("SELECT count(*) FROM heartbeat_history")) >= expected_rows, 180, 0.5)
    wait_until("silent devices offline and published",
               lambda: int(psql("SELECT count(*) FROM devices WHERE status = 'offline'")) >= args.silent
               and int(psql("SELECT count(*) FROM outbox WHERE published_at IS NULL")) == 0, 180, 0.5)
    wal_bytes = int(psql(f"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{wal_before}')"))
    figures["wal_bytes_per_heartbeat"] = wal_bytes / beats
    log(f"{beats:.0f} heartbeats ({figures['steady_rate']:.0f}/s); {wal_bytes / 1e6:.1f} MB of WAL")

    # ------------------------------------------------------------ measurements at rest
    memory_rest = used_memory()
    figures["redis_used_memory_at_rest_per_device"] = (memory_rest - memory_empty) / args.devices
    psql("VACUUM (ANALYZE)")
    history = psql("""
        SELECT count(*), sum(pg_relation_size(c.oid)), sum(pg_indexes_size(c.oid)), sum(pg_total_relation_size(c.oid))
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
        WHERE p.relname = 'heartbeat_history'""").split("|")
    rows = int(psql("SELECT count(*) FROM heartbeat_history"))
    figures["history_rows"] = rows
    figures["history_partitions"] = int(history[0])
    figures["history_heap_bytes_per_row"] = int(history[1]) / rows
    figures["history_index_bytes_per_row"] = int(history[2]) / rows
    figures["history_total_bytes_per_row"] = int(history[3]) / rows

    def per_row(table):
        count = int(psql(f"SELECT count(*) FROM {table}"))
        return count, int(psql(f"SELECT pg_total_relation_size('{table}')")) / max(count, 1)

    for table in ("device_status_events", "outbox", "applied_transitions"):
        figures[f"{table}_rows"], figures[f"{table}_bytes_per_row"] = per_row(table)
    figures["pg_devices_bytes_per_device_after_beating"] = int(psql("SELECT pg_total_relation_size('devices')")) / args.devices
    figures["offline_devices"] = int(psql("SELECT count(*) FROM devices WHERE status = 'offline'"))

    # ------------------------------------------------------------ 5. Redis loses its data: re-seed
    reseeds = metric(args.admin_port, "monitor_registry_reseeds_total")
    log("FLUSHALL: the leader re-seeds the registry from PostgreSQL")
    lost_at = time.time()
    redis("FLUSHALL")
    wait_until("re-seed", lambda: metric(args.admin_port, "monitor_registry_reseeds_total") > reseeds, 60, 0.05)
    figures["reseed_seconds_after_loss"] = time.time() - lost_at
    figures["reseed_duration_metric"] = metric(args.admin_port, "monitor_registry_reseed_duration_seconds")
    redis("SET", "hb:config:buckets", "16", "NX")  # only a process start records it again
finally:
    for name in list(processes):
        stop(name)
    if not args.keep:
        services("stop")

# ---------------------------------------------------------------- extrapolation and report
per_day = 10_000 * 1440  # 10,000 devices, one heartbeat a minute
f = figures
transition_bytes = f["device_status_events_bytes_per_row"] + f["outbox_bytes_per_row"] + f["applied_transitions_bytes_per_row"]
report = {
    "measured": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    "versions": versions,
    "command": "python3 scripts/sizing/measure.py " + " ".join(sys.argv[1:]),
    "seconds": round(time.time() - started_at),
    "figures": {k: (round(v, 2) if isinstance(v, float) else v) for k, v in figures.items()},
}
MB = 1e6
lines = [
    f"Measured {report['measured']} with `{report['command']}` ({report['seconds']} s; Redis {versions['redis']}, "
    f"PostgreSQL {versions['postgresql']}, {versions['binaries']}).",
    "",
    "| what | measured | per 10,000 devices |",
    "|---|---|---|",
    f"| Redis, registered device (hash with the token digest) | {f['redis_bytes_per_registered_device']:.0f} B (`MEMORY USAGE` of the hash {f['redis_registered_hash_memory_usage']:.0f} B) | {f['redis_bytes_per_registered_device'] * 1e4 / MB:.1f} MB |",
    f"| Redis, online device (hash with the latest payload + online-set entry) | {f['redis_bytes_per_online_device']:.0f} B (hash {f['redis_online_hash_memory_usage']:.0f} B, online-set share {f['redis_online_set_bytes_per_device']:.0f} B) | {f['redis_bytes_per_online_device'] * 1e4 / MB:.1f} MB |",
    f"| Redis, history entry waiting for the writer | {f['redis_bytes_per_history_entry']:.0f} B | at the default cap (16 × 1,000,000 entries): {f['redis_bytes_per_history_entry'] * 16e6 / 1e9:.1f} GB |",
    f"| Redis, transition entry waiting for the applier | {f['redis_bytes_per_transition_entry']:.0f} B | |",
    f"| `heartbeat_history` row (heap {f['history_heap_bytes_per_row']:.0f} B + indexes {f['history_index_bytes_per_row']:.0f} B) | {f['history_total_bytes_per_row']:.0f} B | 14,400,000 rows/day = {f['history_total_bytes_per_row'] * per_day / 1e9:.2f} GB/day; × 31 daily partitions (HISTORY_RETENTION_DAYS=30 + today) = {f['history_total_bytes_per_row'] * per_day * 31 / 1e9:.0f} GB |",
    f"| WAL per heartbeat (history COPY + `last_heartbeat` write-behind) | {f['wal_bytes_per_heartbeat']:.0f} B | {f['wal_bytes_per_heartbeat'] * per_day / 1e9:.2f} GB/day |",
    f"| `devices` row | {f['pg_devices_bytes_per_registered_device']:.0f} B registered, {f['pg_devices_bytes_per_device_after_beating']:.0f} B after beating (updates, vacuumed) | {f['pg_devices_bytes_per_device_after_beating'] * 1e4 / MB:.1f} MB |",
    f"| one status transition: `device_status_events` {f['device_status_events_bytes_per_row']:.0f} B + `outbox` {f['outbox_bytes_per_row']:.0f} B + `applied_transitions` {f['applied_transitions_bytes_per_row']:.0f} B | {transition_bytes:.0f} B | 2 transitions per device a day: 20,000 rows/day in each table, {transition_bytes * 2e4 / MB:.1f} MB/day |",
    f"| events published by the relay (Kafka mock, {f['outbox_waiting']} waiting, `OUTBOX_BATCH_SIZE`=500) | {f['events_published_per_second']:.0f} events/s; backlog gone {f['outbox_drain_seconds_after_brokers_up']:.1f} s after the brokers came back | |",
    f"| transitions applied ({args.devices} waiting at monitor start) | all in {f['apply_seconds_for_all']:.1f} s from the monitor's start | |",
    f"| registrations through the ops API (4 clients) | {f['registrations_per_second']:.0f}/s | |",
    f"| registry re-seed after `FLUSHALL` ({args.devices} devices) | {f['reseed_duration_metric']:.2f} s (`monitor_registry_reseed_duration_seconds`); counter up {f['reseed_seconds_after_loss']:.2f} s after the loss | |",
    "",
    f"Steady load: {f['steady_heartbeats']:.0f} heartbeats in {args.beat_seconds} s ({f['steady_rate']:.0f}/s) from {args.devices - args.silent} devices; "
    f"{f['history_rows']} history rows in {f['history_partitions']} partition(s); {f['device_status_events_rows']} status events "
    f"({f['offline_devices']} offline); Redis used memory at rest {f['redis_used_memory_at_rest_per_device']:.0f} B per device. "
    f"Connections of one leading monitor: PostgreSQL {f['pg_connections_leader']}; Redis clients of the gateway and the monitor together: {f['redis_clients']}. "
    f"Outbox rows with `alerted_at` NULL (alerts off): {f['outbox_alerted_at_null']}.",
]
text = "\n".join(lines)
with open(os.path.join(RUN, "sizing-report.md"), "w") as out:
    out.write(text + "\n")
with open(os.path.join(RUN, "sizing-report.json"), "w") as out:
    json.dump(report, out, indent=2)
print(text)
log(f"done: {os.path.join(RUN, 'sizing-report.md')} and .json")
