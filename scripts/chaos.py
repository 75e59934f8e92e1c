#!/usr/bin/env python3
"""make chaos: heartbeat-loadgen against one gateway and two monitors while Redis, PostgreSQL,
Kafka and the leader monitor fail in turn; then the loadgen's audit and our own from PostgreSQL.

What it does:
1. Starts private services (scripts/services.sh in its own run dir: .run/chaos with Redis 6396
   and PostgreSQL 5446, or for --short .run/chaos-short with 6398 and 5448; Redis keeps an
   append-only file, REDIS_APPENDONLY=yes, so it has its data back after each restart; the Kafka
   mock) on a fresh database, one gateway and two monitors (a and b) on free loopback ports, with
   durations scaled down (OFFLINE_AFTER_SECONDS 2, SCAN_INTERVAL_SECONDS 0.5, HEARTBEAT_MIN_INTERVAL
   0, LEADER_REDIS_TIMEOUT 1, RECONCILE_INTERVAL 5). Monitor a starts first and leads; b stands by
   and serves the loadgen's ops API calls (registration, audit). A run dir is locked while in use.
2. Runs heartbeat-loadgen (--interval per device, --silent-fraction of the fleet stops at mid-run)
   and, while it beats, in turn:
   - restarts Redis (BGREWRITEAOF first, as a production Redis's auto-rewrite keeps the AOF
     compact; services.sh stop redis, start redis: same data, from the AOF; --redis-down adds a
     pause);
   - restarts PostgreSQL (services.sh stop postgres / start postgres: every session, so the
     leader lock, is lost);
   - takes the Kafka mock's brokers down (SIGUSR1) and up again (SIGUSR2);
   - SIGKILLs the leader monitor and starts it again a few seconds later (new instance id, as a
     restarted process gets by default).
   Before mid-run, each fault once on its own. Around mid-run, while the silent devices go
   offline: Kafka down over the whole detection window (their device.offline events queue in the
   outbox) and the leader killed inside it (the documented bound is OFFLINE_AFTER + failover + one
   scan; --slack covers the failover). After the window (full run only), each fault once more.
3. When the load ends, every device stops at once, which with a 2 s OFFLINE_AFTER would declare
   the whole fleet offline while the loadgen audits it (and the audit counts any device.offline of
   a live device). So right after the last heartbeat the live devices' scores in the Redis online
   sets are moved an hour ahead ("parked", as scripts/bench/monitor_bench.py does): the history
   writer and the outbox relay keep running, nothing more is declared.
4. Prints the loadgen's report and audit, then checks PostgreSQL itself: every accepted heartbeat
   in heartbeat_history (deduplicated on (device, received_at, entry_id) as the ops API reads it;
   raw duplicates counted), one device.online per device, exactly one device.offline per silent
   device and none for a live one, devices.status as expected, the outbox drained (all published)
   once Kafka is back, and (with kcat) every outbox event on Kafka. History rows the monitors
   report shed (monitor_history_stream_overflow_total) while none is missing are a WARNING.

Exit status: 0 all passed, 1 an audit or check failed (or a process crashed), 2 the harness
itself failed (a service or process did not start), 130 interrupted. Everything it starts is
stopped at exit; logs stay in the run directory and their paths are printed on failure.

usage: scripts/chaos.py [--short] [--bin DIR] [--devices N] [--duration S] ...
  --short: the version `make test` runs (~60-90 s): fewer devices, shorter, each fault once.
"""
import argparse, fcntl, heapq, itertools, json, math, os, re, shutil, signal, socket, subprocess, sys, threading, time
import urllib.error, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402  (after the path insert)
from harness import HarnessError, Interrupted, stamp  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVICES = os.path.join(ROOT, "scripts", "services.sh")
ADMIN_TOKEN = "chaos-admin-token-0123456789"
BUCKETS = 16

parser = argparse.ArgumentParser(description=__doc__.split("\nusage:")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--short", action="store_true", help="short run for make test (100 devices, 60 s, each fault once)")
parser.add_argument("--bin", default=os.path.join(ROOT, ".build", "debug"), help="directory of heartbeat-ingest, -monitor, -loadgen (default .build/debug)")
parser.add_argument("--run-dir", help="services and logs (default .run/chaos, --short .run/chaos-short)")
parser.add_argument("--redis-port", type=int, help="private Redis (default 6396, --short 6398)")
parser.add_argument("--pg-port", type=int, help="private PostgreSQL (default 5446, --short 5448)")
parser.add_argument("--devices", type=int, help="fleet size (default 300, --short 100)")
parser.add_argument("--interval", type=float, default=0.5, help="seconds between a device's heartbeats (default 0.5)")
parser.add_argument("--duration", type=float, help="load run length in seconds (default 180, --short 60)")
parser.add_argument("--silent-fraction", type=float, default=0.1, help="share of the fleet that stops at mid-run (default 0.1)")
parser.add_argument("--offline-after", type=float, default=2.0, help="OFFLINE_AFTER_SECONDS (default 2)")
parser.add_argument("--scan-interval", type=float, default=0.5, help="SCAN_INTERVAL_SECONDS (default 0.5)")
parser.add_argument("--slack", type=float, default=2.0,
                    help="audit slack beyond OFFLINE_AFTER + SCAN_INTERVAL, covering the leader kill inside the detection window (default 2)")
parser.add_argument("--redis-down", type=float, default=0.3,
                    help="seconds Redis stays stopped during its restart (default 0.3: about 0.5 s down in all)")
parser.add_argument("--kafka-down", type=float, default=8.0, help="seconds of a Kafka outage outside the detection window (default 8, at most 10)")
parser.add_argument("--restart-after", type=float, default=3.0, help="seconds before a killed monitor is started again (default 3)")
parser.add_argument("--verbose", action="store_true", help="echo every loadgen progress line (default: every 5 s)")
args = parser.parse_args()
args.devices = args.devices or (100 if args.short else 300)
# the short run has its own run dir and ports, so `make test` and `make chaos` never share services
args.run_dir = args.run_dir or os.path.join(ROOT, ".run", "chaos-short" if args.short else "chaos")
args.redis_port = args.redis_port or (6398 if args.short else 6396)
args.pg_port = args.pg_port or (5448 if args.short else 5446)
args.duration = args.duration or (60.0 if args.short else 180.0)
if args.duration < (50 if args.short else 140):
    parser.error(f"--duration must be at least {50 if args.short else 140} s to fit the faults")

RUN = os.path.abspath(args.run_dir)
# A device's last accepted heartbeat can be 1.1 × interval old when Redis stops and the first scan
# after the restart can come before its next one: a longer Redis outage (restart) can declare a
# device that kept beating offline, since the monitor does not compensate for the time Redis was down.
REDIS_OUTAGE_SAFE = args.offline_after - 1.1 * args.interval - args.scan_interval
PIDS_FILE = os.path.join(RUN, "chaos.pids")
T_START = time.time()
print_lock = threading.Lock()
stop_event = threading.Event()


def log(message):
    with print_lock:
        print(f"chaos: {stamp()} [{time.time() - T_START:6.1f}s] {message}", flush=True)


def wait_until(predicate, timeout, poll=0.05):
    """Polls predicate (every 50 ms here) until it is truthy (returned) or timeout seconds pass (None)."""
    return harness.wait_until(predicate, timeout, poll)


# ---------------------------------------------------------------- services

service_env = dict(os.environ, HEARTBEAT_RUN_DIR=RUN, REDIS_PORT=str(args.redis_port), PG_PORT=str(args.pg_port), REDIS_APPENDONLY="yes")
service_env.pop("KAFKA_MOCK_ARGS", None)


def services(*argv, timeout=120):
    result = subprocess.run([SERVICES, *argv], cwd=ROOT, env=service_env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise HarnessError(f"services.sh {' '.join(argv)} failed ({result.returncode}): {result.stdout.strip()} {result.stderr.strip()}")
    return result.stdout


def psql(sql, timeout=30):
    result = subprocess.run(["psql", urls["POSTGRES_URL"], "-XAtq", "-v", "ON_ERROR_STOP=1", "-F", "\t", "-c", sql],
                            capture_output=True, text=True, timeout=timeout, env=dict(os.environ, PGCONNECT_TIMEOUT="5"))
    if result.returncode != 0:
        raise RuntimeError(f"psql: {result.stderr.strip()}")
    return [line.split("\t") for line in result.stdout.splitlines()]


def scalar(sql):
    rows = psql(sql)
    return rows[0][0] if rows else None


def redis_cli(*command):
    return subprocess.run(["redis-cli", "-p", str(args.redis_port), *command], capture_output=True, text=True, timeout=10).stdout.strip()


def kafka_pid():
    with open(os.path.join(RUN, "kafka", "kafka.pid")) as f:
        return int(f.read().strip())


def kafka_out_count(line):
    try:
        with open(os.path.join(RUN, "kafka", "kafka.out")) as f:
            return sum(1 for l in f if l.strip() == line)
    except OSError:
        return 0


# ---------------------------------------------------------------- processes

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pid_tagged(pid):
    """The process is alive and one of ours (carries CHAOS_RUN_DIR=<this run dir>)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f"CHAOS_RUN_DIR={RUN}".encode() in f.read().split(b"\0")
    except OSError:
        return False


def kill_leftovers():
    """Processes a previous chaos run of this run dir left behind (it was SIGKILLed)."""
    try:
        pids = [int(p) for p in open(PIDS_FILE).read().split()]
    except (OSError, ValueError):
        return
    for pid in pids:
        if pid_tagged(pid):
            log(f"stopping pid {pid} left by an earlier chaos run")
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    os.remove(PIDS_FILE)


class Proc:
    """A gateway or monitor process: its log, and whether we killed it (any other exit is a crash)."""

    def __init__(self, name, binary, env, log_path, port):
        self.name, self.binary, self.env, self.log_path, self.port = name, binary, env, log_path, port
        self.popen = None
        self.expected_exit = False
        self.crash_reported = False

    def start(self, extra_env=None):
        env = dict(os.environ, **self.env, **(extra_env or {}), CHAOS_RUN_DIR=RUN)
        out = open(self.log_path, "a")
        out.write(f"==== chaos: starting {self.name} at {stamp()} ({' '.join(f'{k}={v}' for k, v in (extra_env or {}).items())})\n")
        out.flush()
        self.popen = subprocess.Popen([os.path.join(args.bin, self.binary)], env=env, stdout=out, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, cwd=RUN, start_new_session=True)
        # only now: until the new process replaces it, the watcher must still see the killed one as expected
        self.expected_exit = False
        self.crash_reported = False
        out.close()
        with open(PIDS_FILE, "a") as f:
            f.write(f"{self.popen.pid}\n")
        return self

    @property
    def alive(self):
        return self.popen is not None and self.popen.poll() is None

    def kill(self):
        self.expected_exit = True
        if self.alive:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(timeout=10)

    def stop(self):
        self.expected_exit = True
        if not self.alive:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=10)

    def tail(self, n=20):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""


def http_get(port, path, timeout=1.0, token=False):
    return harness.http(f"http://127.0.0.1:{port}{path}", timeout=timeout,
                        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"} if token else None)


def readyz(proc):
    """(status, body dict) of a monitor's or gateway's /readyz; (None, {}) when it does not answer."""
    if not proc.alive:
        return None, {}
    status, body = http_get(proc.port, "/readyz", timeout=0.5)
    try:
        return status, json.loads(body) if body else {}
    except ValueError:
        return status, {}


def leaders():
    return [m for m in monitors.values() if readyz(m)[1].get("leader") is True]


# ---------------------------------------------------------------- watcher

class Watcher(threading.Thread):
    """Every 0.1 s: who leads (from /readyz of both monitors) and whether a process died on its own.
    Every second: the monitors' counters (summed over each process's life, since a SIGKILL loses them)."""

    COUNTERS = ("monitor_leader_terms_total", "monitor_storm_guard_trips_total", "monitor_kafka_delivery_errors_total",
                "monitor_apply_errors_total", "monitor_registry_reseeds_total", "monitor_reconcile_repaired_total",
                "monitor_devices_declared_offline_total", "monitor_events_published_total", "monitor_history_stream_overflow_total")

    def __init__(self):
        super().__init__(daemon=True)
        self.leader = None
        self.changes = []          # (time, new leader name or None)
        self.both_leading = 0      # polls where both said leader:true
        self.crashes = []
        self.counters = {}         # pid -> {name: value}
        self.last_metrics = 0

    def run(self):
        while not stop_event.is_set():
            try:
                self.poll()
            except Exception as error:  # never let the watcher die silently
                log(f"watcher: {error!r}")
            stop_event.wait(0.1)

    def poll(self):
        for proc in [gateway, *monitors.values()]:
            if proc.popen is not None and not proc.alive and not proc.expected_exit and not proc.crash_reported:
                proc.crash_reported = True
                self.crashes.append((time.time(), proc.name, proc.popen.returncode))
                log(f"CRASH: {proc.name} (pid {proc.popen.pid}) exited with {proc.popen.returncode}; log {proc.log_path}:\n{proc.tail()}")
        lead = [m.name for m in monitors.values() if readyz(m)[1].get("leader") is True]
        if len(lead) > 1:
            self.both_leading += 1
        current = lead[0] if len(lead) == 1 else (self.leader if lead else None)
        if current != self.leader:
            self.changes.append((time.time(), current))
            self.leader = current
        if time.time() - self.last_metrics >= 1:
            self.last_metrics = time.time()
            for m in monitors.values():
                if not m.alive:
                    continue
                status, text = http_get(m.port, "/metrics", timeout=1)
                if status != 200:
                    continue
                values = {}
                for name in self.COUNTERS:
                    values[name] = sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)", text, re.M))
                self.counters[m.popen.pid] = values

    def total(self, name):
        return int(sum(v.get(name, 0) for v in self.counters.values()))


# ---------------------------------------------------------------- loadgen output

def errors_delta(before, after):
    return " ".join(f"{k}:{v}" for k, v in harness.errors_between(before, after).items()) or "none"


# ---------------------------------------------------------------- faults

faults = []  # dicts: kind, at (relative to the load start), figures


def compact_aof():
    """BGREWRITEAOF and wait for it, as a production Redis's auto-rewrite keeps its AOF compact:
    otherwise the AOF replays every XADD of the run and the restart's load time grows with it
    (0.8 s after 100 s of load here)."""
    redis_cli("BGREWRITEAOF")
    return wait_until(lambda: "aof_rewrite_in_progress:0" in (info := redis_cli("INFO", "persistence"))
                      and "aof_rewrite_scheduled:0" in info, 15, poll=0.05)


def fault_redis():
    compact_aof()
    t0 = time.time()
    before = reader.latest
    services("stop", "redis")
    stopped = time.time()
    time.sleep(args.redis_down)
    services("start", "redis")
    started = time.time()
    gw = wait_until(lambda: readyz(gateway)[0] == 200, 30)
    gw_at = time.time()
    lead = wait_until(leaders, 30)
    lead_at = time.time()
    keys = redis_cli("DBSIZE")
    record = {"kind": "redis restart", "down_s": round(started - t0, 2), "stop_s": round(stopped - t0, 2), "gateway_ready_s": round(gw_at - t0, 2) if gw else None,
              "leader_s": round(lead_at - t0, 2) if lead else None, "leader": lead[0].name if lead else None}
    log(f"FAULT redis restart: stop {stamp(t0)}–{stamp(stopped)} (AOF flushed), pause {args.redis_down} s, started {stamp(started)}: down {record['down_s']} s; "
        f"gateway ready after {record['gateway_ready_s']} s; leader {record['leader']} after {record['leader_s']} s; {keys} keys back")
    if record["gateway_ready_s"] and record["gateway_ready_s"] > REDIS_OUTAGE_SAFE:
        log(f"  (an outage over {REDIS_OUTAGE_SAFE:.2f} s can leave a live device's last heartbeat older than OFFLINE_AFTER when Redis is back)")
    timer = threading.Timer(3, lambda: log(f"  redis restart: loadgen answers other than 200 since it began: {errors_delta(before, reader.latest)}"))
    timer.daemon = True
    timer.start()
    return record


def fault_postgres():
    t0 = time.time()
    before_leader = watcher.leader
    services("stop", "postgres")
    stopped = time.time()
    services("start", "postgres")
    started = time.time()
    lead = wait_until(leaders, 60, poll=0.02)
    lead_at = time.time()
    record = {"kind": "postgres restart", "down_s": round(started - t0, 2), "lock_back_s": round(lead_at - t0, 2) if lead else None,
              "leader_before": before_leader, "leader": lead[0].name if lead else None}
    log(f"FAULT postgres restart: stop {stamp(t0)}–{stamp(stopped)}, started {stamp(started)}: down {record['down_s']} s; "
        f"leader lock back after {record['lock_back_s']} s ({before_leader} -> {record['leader']})")
    return record


kafka_state = {"down_at": None, "backlog_peak": 0}


def fault_kafka_down():
    n = kafka_out_count("brokers down")
    t0 = time.time()
    os.kill(kafka_pid(), signal.SIGUSR1)
    ok = wait_until(lambda: kafka_out_count("brokers down") > n, 5)
    kafka_state.update(down_at=t0, backlog_peak=0)
    log(f"FAULT kafka down: SIGUSR1 to the mock at {stamp(t0)}, brokers down {'confirmed' if ok else 'NOT confirmed'} after {time.time() - t0:.2f} s")
    return None


def fault_kafka_up():
    n = kafka_out_count("brokers up")
    t0 = time.time()
    os.kill(kafka_pid(), signal.SIGUSR2)
    ok = wait_until(lambda: kafka_out_count("brokers up") > n, 5)
    try:
        backlog = int(scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL"))
    except Exception:
        backlog = None
    record = {"kind": "kafka outage", "down_s": round(t0 - kafka_state["down_at"], 2), "backlog_at_up": backlog, "drained_s": None}
    log(f"FAULT kafka up: SIGUSR2 at {stamp(t0)} after {record['down_s']} s down ({'confirmed' if ok else 'NOT confirmed'}); "
        f"{backlog} outbox rows unpublished")

    def drain():
        done = wait_until(lambda: scalar_safe("SELECT count(*) FROM outbox WHERE published_at IS NULL") == "0", 120, poll=0.2)
        record["drained_s"] = round(time.time() - t0, 2) if done else None
        log(f"  kafka outage: outbox {'drained' if done else 'NOT drained'} {record['drained_s']} s after the brokers came back")
    threading.Thread(target=drain, daemon=True).start()
    return record


def scalar_safe(sql):
    try:
        return scalar(sql)
    except Exception:
        return None


def fault_leader_kill():
    lead = wait_until(leaders, 10)
    if not lead:
        log("FAULT leader kill: no leader to kill (skipped)")
        return {"kind": "leader kill", "skipped": True}
    victim = lead[0]
    survivor = next(m for m in monitors.values() if m is not victim)
    t0 = time.time()
    victim.kill()
    taken = wait_until(lambda: survivor.alive and readyz(survivor)[1].get("leader") is True, 30, poll=0.02)
    record = {"kind": "leader kill", "victim": victim.name, "failover_s": round(time.time() - t0, 2) if taken else None,
              "new_leader": survivor.name if taken else None}
    log(f"FAULT leader kill: SIGKILL {victim.name} (pid {victim.popen.pid}) at {stamp(t0)}; "
        f"{survivor.name} leads after {record['failover_s']} s")
    schedule_at(time.time() - load_t0 + args.restart_after, f"restart {victim.name}", lambda: restart_monitor(victim))
    return record


incarnation = {"a": 1, "b": 1}


def restart_monitor(proc):
    incarnation[proc.name[-1]] += 1
    instance = f"chaos-{proc.name[-1]}.{incarnation[proc.name[-1]]}"
    proc.start({"MONITOR_INSTANCE_ID": instance})
    ready = wait_until(lambda: readyz(proc)[0] == 200, 30)
    log(f"  {proc.name} started again as {instance} (pid {proc.popen.pid}), {'ready' if ready else 'NOT ready'}; "
        f"leader: {', '.join(m.name for m in leaders()) or 'none'}")
    return None


queue = []
queue_seq = itertools.count()


def schedule_at(offset, name, fn):
    heapq.heappush(queue, (offset, next(queue_seq), name, fn))


def build_schedule():
    d, mid = args.duration, args.duration / 2
    window_end = mid + args.offline_after + args.scan_interval + args.slack
    kinds = {"redis": fault_redis, "postgres": fault_postgres, "leader": fault_leader_kill}

    def place(kind, at):
        if kind == "kafka":
            down = min(args.kafka_down, 10)
            schedule_at(at, "kafka down", fault_kafka_down)
            schedule_at(at + down, "kafka up", fault_kafka_up)
        else:
            schedule_at(at, kind, kinds[kind])

    def spread(kinds_in_order, start, end):
        for i, kind in enumerate(kinds_in_order):
            place(kind, start + i * (end - start) / max(1, len(kinds_in_order) - 1))

    if args.short:
        spread(["redis", "postgres"], 8, mid - 11)
    else:
        spread(["redis", "postgres", "kafka", "leader"], 12, mid - 12)
    # the detection window of the silent devices: Kafka down over all of it, the leader killed inside
    schedule_at(mid - 4, "kafka down (window)", fault_kafka_down)
    schedule_at(mid + args.offline_after / 2, "leader (window)", fault_leader_kill)
    schedule_at(window_end + 3, "kafka up (window)", fault_kafka_up)
    if not args.short:
        spread(["redis", "postgres", "leader", "kafka"], window_end + 8, d - 25)
    return window_end


# ---------------------------------------------------------------- checks

def park_live_devices(live_ids):
    """Scores the live devices an hour ahead in the online sets (ZADD XX: never re-adds one)."""
    ahead = int(time.time() * 1000) + 3_600_000
    by_bucket = {}
    for device in live_ids:
        h = 2166136261
        for byte in device.encode():
            h = ((h ^ byte) * 16777619) & 0xFFFFFFFF
        by_bucket.setdefault(h % BUCKETS, []).append(device)
    updated = 0
    for b, ids in by_bucket.items():
        argv = ["ZADD", f"hb:{{{b}}}:online", "XX", "CH"]
        for device in ids:
            argv += [str(ahead), device]
        out = redis_cli(*argv)
        updated += int(out) if out.isdigit() else 0
    return updated


def pg_checks(fleet, silent_ids, accepted, bound):
    """Returns (problems, figures) from PostgreSQL."""
    problems, fig = [], {}
    index = {device: i for i, device in enumerate(fleet)}
    silent = set(silent_ids)

    # history: every accepted heartbeat once (deduplicated as the ops API reads), the writer given time
    def history():
        row = psql("""SELECT count(*), (SELECT count(*) FROM (SELECT DISTINCT device_id, received_at, entry_id FROM heartbeat_history) x)
                      FROM heartbeat_history""")[0]
        return int(row[0]), int(row[1])
    counts = wait_until(lambda: (lambda c: c if c[1] >= accepted else None)(history()), 30, poll=0.5) or history()
    fig["history_raw"], fig["history_dedup"] = counts
    fig["history_duplicates"] = counts[0] - counts[1]
    if counts[1] != accepted:
        problems.append(f"heartbeat_history holds {counts[1]} distinct heartbeats (raw {counts[0]}), accepted {accepted}"
                        + (" (more than accepted: heartbeats recorded whose reply the loadgen did not get as 200)" if counts[1] > accepted else " (LOST heartbeats)"))
    foreign = int(scalar("SELECT count(*) FROM heartbeat_history h WHERE NOT EXISTS (SELECT 1 FROM devices d WHERE d.id = h.device_id AND d.name LIKE 'loadgen-%')"))
    if foreign:
        problems.append(f"{foreign} history rows of devices not in the fleet")

    # status events and outbox
    events = psql("""SELECT device_id, from_status, to_status, extract(epoch FROM at - last_heartbeat), extract(epoch FROM at)
                     FROM device_status_events ORDER BY id""")
    online_n, offline_n, false_n = {}, {}, {}
    delays, false_offline = [], []
    silence_at = load_t0 + args.duration / 2  # a silent device beats until then
    for device, _from, to, delay, at in events:
        if to == "online":
            online_n[device] = online_n.get(device, 0) + 1
        elif to == "offline":
            offline_n[device] = offline_n.get(device, 0) + 1
            if device in silent and float(at) >= silence_at:
                delays.append(float(delay))
            else:  # a device that was still beating
                false_n[device] = false_n.get(device, 0) + 1
                false_offline.append((float(at), device, float(delay)))
    # false offlines, grouped by the fault that ended last before them
    groups = {}
    for at, device, delay in false_offline:
        cause = max((f for f in faults if f["start"] <= at), key=lambda f: f["start"], default=None)
        key = (f"{at - cause['start']:.2f} s after the {cause['kind']} began (t={cause['t']}s)"
               + (f" (Redis down {cause['down_s']} s; over {REDIS_OUTAGE_SAFE:.2f} s a beating device can look silent)" if cause["kind"] == "redis restart" else "")
               if cause else "before any fault")
        groups.setdefault(key, []).append((at, device, delay))
    for key, items in groups.items():
        problems.append(f"{len(items)} live devices declared offline at {stamp(items[0][0])}–{stamp(items[-1][0])}, {key}; "
                        f"silence {min(i[2] for i in items):.2f}–{max(i[2] for i in items):.2f} s; e.g. "
                        + ", ".join(f"{d} (loadgen-{index.get(d)})" for _, d, _ in items[:3]))
    for device in fleet:
        # one when it first beat, and one more after each false offline (it beat again)
        if online_n.get(device, 0) != 1 + false_n.get(device, 0):
            problems.append(f"{device} (loadgen-{index[device]}): {online_n.get(device, 0)} device.online events, expected "
                            f"{1 + false_n.get(device, 0)}" + (f" (1 + {false_n[device]} after false offlines)" if device in false_n else ""))
    for device in silent:
        if offline_n.get(device, 0) - false_n.get(device, 0) != 1:
            problems.append(f"silent {device} (loadgen-{index[device]}): {offline_n.get(device, 0) - false_n.get(device, 0)} "
                            "device.offline events after it fell silent, expected 1")
    fig["events_online"] = sum(online_n.values())
    fig["events_offline"] = sum(offline_n.values())
    fig["events_expected"] = len(fleet) + len(silent)
    fig["detection_max_s"] = round(max(delays), 2) if delays else None
    fig["detection_min_s"] = round(min(delays), 2) if delays else None
    over = [d for d in delays if d > bound]
    if over:
        problems.append(f"{len(over)} silent devices declared offline later than the bound {bound:.2f} s (max {max(over):.2f} s)")

    status = dict(psql("SELECT id, status FROM devices WHERE name LIKE 'loadgen-%'"))
    wrong = [d for d in fleet if status.get(d) != ("offline" if d in silent else "online")]
    if wrong:
        problems.append(f"{len(wrong)} devices with the wrong status in devices (e.g. {wrong[0]}: {status.get(wrong[0])}, "
                        f"expected {'offline' if wrong[0] in silent else 'online'})")

    # outbox: every event there, all published once Kafka is back
    def unpublished():
        return int(scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL"))
    t0 = time.time()
    drained = wait_until(lambda: unpublished() == 0, 60, poll=0.5)
    fig["outbox_rows"] = int(scalar("SELECT count(*) FROM outbox"))
    fig["outbox_unpublished"] = unpublished()
    fig["outbox_drain_wait_s"] = round(time.time() - t0, 1)
    if not drained:
        problems.append(f"outbox not drained: {fig['outbox_unpublished']} rows unpublished 60 s after the run")
    missing = int(scalar("SELECT count(*) FROM device_status_events e WHERE NOT EXISTS (SELECT 1 FROM outbox o WHERE o.event_id = e.event_id)"))
    if missing:
        problems.append(f"{missing} status events without an outbox row")
    fig["outbox_ids"] = {row[0] for row in psql("SELECT event_id FROM outbox")}
    return problems, fig


def kafka_check(outbox_ids):
    """Reads both topics from the beginning with kcat; returns (problems, figures)."""
    if not shutil.which("kcat"):
        return [], {"kafka": "kcat not installed: events on Kafka not read"}
    seen = []
    for topic in ("device.online", "device.offline"):
        try:
            out = subprocess.run(["kcat", "-C", "-b", urls["KAFKA_BROKERS"], "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%s\\n"],
                                 capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:
            return [f"kcat on {topic} did not finish within 60 s"], {}
        if out.returncode != 0:
            return [f"kcat on {topic} failed: {out.stderr.strip()[:300]}"], {}
        for line in out.stdout.splitlines():
            try:
                seen.append(json.loads(line)["event_id"])
            except (ValueError, KeyError):
                pass
    fig = {"kafka_messages": len(seen), "kafka_distinct": len(set(seen)), "kafka_duplicates": len(seen) - len(set(seen))}
    problems = []
    lost = outbox_ids - set(seen)
    if lost:
        problems.append(f"{len(lost)} outbox events not on Kafka (e.g. {sorted(lost)[0]})")
    extra = set(seen) - outbox_ids
    if extra:
        problems.append(f"{len(extra)} events on Kafka that are not in the outbox")
    return problems, fig


def log_summary(path):
    """Counts of error / critical log lines (swift-log: `<time> <level> <label>: <metadata> [<module>] <message>`)
    and the most frequent messages."""
    counts, messages = {"error": 0, "critical": 0}, {}
    try:
        for line in open(path, errors="replace"):
            parts = line.split(" ", 2)
            if len(parts) == 3 and parts[1] in counts:
                counts[parts[1]] += 1
                match = re.search(r"\[(\w+)\] (.*)$", line.strip())
                key = f"[{match.group(1)}] {match.group(2)}" if match else parts[2].strip()
                error = re.search(r"error=(.*?) \[\w+\] ", line)
                if error:
                    key += f" ({re.sub(r'[0-9]+', '#', error.group(1))[:90]})"
                messages[key[:160]] = messages.get(key[:160], 0) + 1
    except OSError:
        pass
    top = sorted(messages.items(), key=lambda kv: -kv[1])[:4]
    return counts, top


# ---------------------------------------------------------------- main

def on_signal(signum, _frame):
    raise Interrupted(signum)


for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(sig, on_signal)

urls = {}
gateway = None
monitors = {}
watcher = None
reader = None
loadgen = None
load_t0 = None
exit_code = 2
lock = None


def cleanup():
    if lock is None:
        return  # never started anything: the run dir belongs to another chaos run
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    stop_event.set()
    if loadgen is not None and loadgen.poll() is None:
        loadgen.terminate()
        try:
            loadgen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            loadgen.kill()
    for proc in [gateway, *monitors.values()]:
        if proc is not None:
            proc.stop()
    try:
        # the brokers may have been left down by an interrupted outage: the mock is stopped anyway
        out = subprocess.run([SERVICES, "stop"], cwd=ROOT, env=service_env, capture_output=True, text=True, timeout=120)
        for line in out.stdout.splitlines():
            log(line)
    except Exception as error:
        log(f"services.sh stop failed: {error}")
    try:
        os.remove(PIDS_FILE)
    except OSError:
        pass


try:
    for tool in ("psql", "redis-cli", "redis-server", "stdbuf"):
        if not shutil.which(tool):
            raise HarnessError(f"{tool} missing: run scripts/install-deps.sh")
    for binary in ("heartbeat-ingest", "heartbeat-monitor", "heartbeat-loadgen"):
        if not os.access(os.path.join(args.bin, binary), os.X_OK):
            raise HarnessError(f"{os.path.join(args.bin, binary)} missing: swift build, or --bin DIR")
    os.makedirs(RUN, exist_ok=True)
    lock = open(os.path.join(RUN, "chaos.lock"), "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock = None
        raise HarnessError(f"another chaos run uses {RUN} (its services too): wait for it, or give --run-dir and ports")
    kill_leftovers()
    log(f"{'short' if args.short else 'full'} run: {args.devices} devices every {args.interval} s for {args.duration:.0f} s, "
        f"{args.silent_fraction:.0%} silent at mid-run; OFFLINE_AFTER {args.offline_after} s, SCAN_INTERVAL {args.scan_interval} s; run dir {RUN}")
    # fresh state: services of an earlier run stopped, Redis's append-only file removed, schema dropped
    services("stop")
    shutil.rmtree(os.path.join(RUN, "redis"), ignore_errors=True)
    for line in services("start").splitlines():
        log(line)
    urls = dict(line.replace("export ", "", 1).split("=", 1) for line in services("env").splitlines() if line.startswith("export "))
    for key in ("REDIS_URL", "POSTGRES_URL", "KAFKA_BROKERS"):
        if key not in urls:
            raise HarnessError(f"services.sh env gave no {key}")
    psql("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    log(f"services: {urls['REDIS_URL']} (appendonly {redis_cli('CONFIG', 'GET', 'appendonly').split()[-1]}), {urls['POSTGRES_URL']}, Kafka {urls['KAFKA_BROKERS']}")

    common = {"REDIS_URL": urls["REDIS_URL"], "LOG_LEVEL": "info", "LOG_FORMAT": "text"}  # the log summary reads text lines
    monitor_env = dict(common, POSTGRES_URL=urls["POSTGRES_URL"], KAFKA_BROKERS=urls["KAFKA_BROKERS"], ADMIN_HOST="127.0.0.1",
                       ADMIN_TOKEN=ADMIN_TOKEN, OFFLINE_AFTER_SECONDS=str(args.offline_after), SCAN_INTERVAL_SECONDS=str(args.scan_interval),
                       LEADER_REDIS_TIMEOUT_SECONDS="1", RECONCILE_INTERVAL_SECONDS="5")
    for name in ("a", "b"):
        port = free_port()
        monitors[name] = Proc(f"monitor-{name}", "heartbeat-monitor", dict(monitor_env, ADMIN_PORT=str(port)),
                              os.path.join(RUN, f"monitor-{name}.log"), port)
    gw_port = free_port()
    gateway = Proc("gateway", "heartbeat-ingest", dict(common, HTTP_HOST="127.0.0.1", HTTP_PORT=str(gw_port), HEARTBEAT_MIN_INTERVAL_SECONDS="0"),
                   os.path.join(RUN, "gateway.log"), gw_port)
    for proc in (gateway, *monitors.values()):
        try:
            os.remove(proc.log_path)
        except OSError:
            pass
    # a first, so it takes the lock; b stands by and serves the loadgen's ops API calls
    monitors["a"].start({"MONITOR_INSTANCE_ID": "chaos-a.1"})
    if not wait_until(lambda: readyz(monitors["a"])[1].get("leader") is True, 60, poll=0.1):
        raise HarnessError(f"monitor-a not leading within 60 s; log {monitors['a'].log_path}:\n{monitors['a'].tail()}")
    monitors["b"].start({"MONITOR_INSTANCE_ID": "chaos-b.1"})
    gateway.start()
    for proc in (monitors["b"], gateway):
        if not wait_until(lambda: readyz(proc)[0] == 200, 60, poll=0.1):
            raise HarnessError(f"{proc.name} not ready within 60 s; log {proc.log_path}:\n{proc.tail()}")
    log(f"gateway :{gateway.port}, monitor-a :{monitors['a'].port} (leader), monitor-b :{monitors['b'].port} (standby; the loadgen's ops API)")
    watcher = Watcher()
    watcher.start()

    devices_file = os.path.join(RUN, "devices.tsv")
    report_file = os.path.join(RUN, "loadgen.json")
    for path in (devices_file, report_file):
        if os.path.exists(path):
            os.remove(path)
    argv = [os.path.join(args.bin, "heartbeat-loadgen"), "--gateway", f"http://127.0.0.1:{gateway.port}",
            "--admin", f"http://127.0.0.1:{monitors['b'].port}", "--admin-token", ADMIN_TOKEN,
            "--devices", str(args.devices), "--interval", str(args.interval), "--duration", str(args.duration),
            "--silent-fraction", str(args.silent_fraction), "--offline-after", str(args.offline_after),
            "--scan-interval", str(args.scan_interval), "--slack", str(args.slack), "--audit-sample", str(max(1000, args.devices)),
            "--save-devices", devices_file, "--json", report_file]
    log("loadgen: " + " ".join(argv))
    # line-buffered (its stdout is a pipe here), so the start of the load is seen when it happens
    loadgen = subprocess.Popen(["stdbuf", "-oL", *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=RUN, start_new_session=True,
                               env=dict(os.environ, CHAOS_RUN_DIR=RUN))
    with open(PIDS_FILE, "a") as f:
        f.write(f"{loadgen.pid}\n")
    reader = harness.LoadgenReader(loadgen, os.path.join(RUN, "loadgen.log"), log, args.verbose)
    reader.start()
    if not wait_until(lambda: reader.started_at or loadgen.poll() is not None, 120, poll=0.05) or reader.started_at is None:
        raise HarnessError(f"the loadgen did not start beating within 120 s (exit {loadgen.poll()}); see {reader.path}")
    load_t0 = reader.started_at
    load_end = load_t0 + args.duration
    window_end = build_schedule()
    mid = args.duration / 2
    bound = args.offline_after + args.scan_interval + args.slack
    log(f"load started; silent devices stop at t={mid:.0f}s, detection window t={mid:.0f}–{window_end:.1f}s "
        f"(audit bound OFFLINE_AFTER + SCAN_INTERVAL + slack = {bound:.1f} s); faults at: "
        + ", ".join(f"{name} t={at:.1f}s" for at, _, name, _ in sorted(queue)))

    # the faults, in turn
    while queue:
        at, _, name, fn = heapq.heappop(queue)
        delay = load_t0 + at - time.time()
        if delay > 0:
            time.sleep(delay)
        if loadgen.poll() is not None:
            raise HarnessError(f"the loadgen exited ({loadgen.returncode}) during the faults; see {reader.path}")
        late = time.time() - (load_t0 + at)
        if late > 1:
            log(f"({name} {late:.1f} s late)")
        began = time.time()
        record = fn()
        if record:
            record.update(t=round(began - load_t0, 1), start=began, end=time.time())
            faults.append(record)

    # the end of the load: park the live devices once their last heartbeats are in
    fleet = [line.split("\t")[0] for line in open(devices_file).read().splitlines() if line]
    silent_count = int(math.floor(len(fleet) * args.silent_fraction + 0.5))
    silent_ids, live_ids = fleet[:silent_count], fleet[silent_count:]
    earliest_stale = load_end - args.interval * 1.1 + args.offline_after
    for offset in (0.3, 0.8, 1.3):
        time.sleep(max(0, load_end + offset - time.time()))
        if offset == 0.3 and time.time() > earliest_stale - args.scan_interval:
            log("WARNING: parking later than the earliest end-of-load staleness; an end-of-load offline may be counted")
        parked = park_live_devices(live_ids)
    log(f"load ended: {len(live_ids)} live devices parked an hour ahead in the online sets (nothing more is declared offline)")

    try:
        loadgen.wait(timeout=args.duration + 300)
    except subprocess.TimeoutExpired:
        raise HarnessError("the loadgen did not finish its audit within 300 s")
    reader.join(timeout=10)
    rc = loadgen.returncode
    report = {}
    try:
        report = json.load(open(report_file))
    except (OSError, ValueError):
        pass
    audit = report.get("audit", {})
    log(f"loadgen exited {rc}: audit {'PASSED' if audit.get('passed') else 'FAILED'}; JSON report {report_file}")
    for line in json.dumps({k: v for k, v in report.items() if k != "audit"}, sort_keys=True).splitlines():
        log(f"  report: {line}")
    log(f"  audit: {json.dumps(audit, sort_keys=True)[:2000]}")

    # our own audit from PostgreSQL and Kafka
    accepted = report.get("ok", reader.latest["ok"])
    problems = []
    if rc not in (0, 3) or not audit:
        problems.append(f"the loadgen exited {rc} without an audit")
    elif not audit.get("passed"):
        problems.append("the loadgen's audit failed: " + "; ".join(audit.get("problems", [])[:5]))
    pg_problems, fig = pg_checks(fleet, silent_ids, accepted, bound)
    problems += pg_problems
    kafka_problems, kafka_fig = kafka_check(fig.pop("outbox_ids"))
    problems += kafka_problems
    fig.update(kafka_fig)
    for t, name, code in watcher.crashes:
        problems.append(f"{name} crashed (exit {code}) at {stamp(t)}")
    warnings = []
    shed = watcher.total("monitor_history_stream_overflow_total")
    if shed and fig.get("history_dedup") == accepted:
        warnings.append(f"the history writer reported {shed} rows shed by the stream cap (monitor_history_stream_overflow_total, "
                        "'history stream cap hit' log lines) although every accepted heartbeat is in heartbeat_history: a false alarm")
    stop_event.set()

    # summary
    kills = [f for f in faults if f["kind"] == "leader kill" and not f.get("skipped")]
    pgs = [f for f in faults if f["kind"] == "postgres restart"]
    rds = [f for f in faults if f["kind"] == "redis restart"]
    kfs = [f for f in faults if f["kind"] == "kafka outage"]
    gaps, last = [], None
    for t, who in watcher.changes:
        if who is None:
            last = t
        elif last is not None:
            gaps.append(t - last)
            last = None
    lines = [
        f"chaos summary ({'short' if args.short else 'full'} run, {args.devices} devices, {args.duration:.0f} s, {len(fleet) - len(live_ids)} silent):",
        f"  faults: {len(rds)} Redis restarts, {len(pgs)} PostgreSQL restarts, {len(kfs)} Kafka outages, {len(kills)} leader kills",
        f"  heartbeats: sent {report.get('sent')}, accepted {accepted}, by status {report.get('by_status')}, transport errors {report.get('transport_errors')}; "
        f"latency p99 {report.get('latency_ms', {}).get('p99', 0):.1f} ms, max {report.get('latency_ms', {}).get('max', 0):.0f} ms",
        f"  leadership: {sum(1 for _, who in watcher.changes[1:] if who)} changes seen (leader terms {watcher.total('monitor_leader_terms_total')}), "
        f"longest without a leader {max(gaps, default=0):.2f} s, both reporting leader in {watcher.both_leading} polls",
        f"  leader kills: failover {', '.join(str(f['failover_s']) for f in kills)} s",
        f"  PostgreSQL restarts: down {', '.join(str(f['down_s']) for f in pgs)} s, lock back after {', '.join(str(f['lock_back_s']) for f in pgs)} s",
        f"  Redis restarts: down {', '.join(str(f['down_s']) for f in rds)} s, gateway ready after {', '.join(str(f['gateway_ready_s']) for f in rds)} s",
        f"  Kafka outages: down {', '.join(str(f['down_s']) for f in kfs)} s, backlog at recovery {', '.join(str(f['backlog_at_up']) for f in kfs)} rows, "
        f"drained {', '.join(str(f['drained_s']) for f in kfs)} s after; delivery errors {watcher.total('monitor_kafka_delivery_errors_total')}",
        f"  offline detection (silent devices, server time from last heartbeat to device.offline): "
        f"{fig.get('detection_min_s')}–{fig.get('detection_max_s')} s, bound {bound:.1f} s",
        f"  events: expected {fig.get('events_expected')} ({len(fleet)} online + {silent_count} offline), in PostgreSQL "
        f"{fig.get('events_online', 0) + fig.get('events_offline', 0)} ({fig.get('events_online')} online + {fig.get('events_offline')} offline), "
        f"outbox {fig.get('outbox_rows')} rows / {fig.get('outbox_unpublished')} unpublished, on Kafka "
        + (f"{fig.get('kafka_distinct')} distinct ({fig.get('kafka_messages')} messages, {fig.get('kafka_duplicates')} duplicates)"
           if "kafka_messages" in fig else fig.get("kafka", "?")),
        f"  heartbeat_history: raw {fig.get('history_raw')}, deduplicated {fig.get('history_dedup')} "
        f"(duplicates {fig.get('history_duplicates')}), accepted {accepted}",
        f"  monitors: storm guard trips {watcher.total('monitor_storm_guard_trips_total')}, apply errors {watcher.total('monitor_apply_errors_total')}, "
        f"registry re-seeds {watcher.total('monitor_registry_reseeds_total')} (one at the start), history rows reported shed {shed}, reconcile repairs {watcher.total('monitor_reconcile_repaired_total')}, "
        f"crashes {len(watcher.crashes)}",
    ]
    for proc in (gateway, *monitors.values()):
        counts, top = log_summary(proc.log_path)
        lines.append(f"  {proc.name} log: {counts['error']} error, {counts['critical']} critical lines"
                     + "".join(f"\n      {n}× {m}" for n, m in [(n, m) for m, n in top]))
    lines += [f"WARNING: {w}" for w in warnings]
    if problems:
        lines.append("RESULT: FAILED")
        lines += [f"  - {p}" for p in problems[:30]]
        lines.append(f"  logs: {', '.join(p.log_path for p in (gateway, *monitors.values()))}, {reader.path}, "
                     f"{os.path.join(RUN, 'redis', 'redis.log')}, {os.path.join(RUN, 'pg', 'pg.log')}, {os.path.join(RUN, 'kafka', 'kafka.log')}")
        exit_code = 1
    else:
        lines.append(f"RESULT: PASSED in {time.time() - T_START:.0f} s")
        exit_code = 0
    with print_lock:
        print("\n".join(lines), flush=True)
except Interrupted as signum:
    log(f"interrupted (signal {signum}): stopping everything")
    exit_code = 130
except HarnessError as error:
    log(f"ERROR: {error}")
    for proc in (gateway, *monitors.values()):
        if proc is not None:
            log(f"  log of {proc.name}: {proc.log_path}")
    exit_code = 2
except Exception as error:
    import traceback
    traceback.print_exc()
    log(f"ERROR: {error!r}")
    exit_code = 2
finally:
    cleanup()
sys.exit(exit_code)
