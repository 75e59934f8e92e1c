"""What scripts/chaos.py, scripts/deployment.py and scripts/cluster_test.py share: timestamps, polling, plain HTTP, pids, ports."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request


class HarnessError(Exception):
    """Something did not start or answer: not a finding about the system."""


class Interrupted(BaseException):
    pass


def stamp(at=None):
    """Local wall time with milliseconds, for progress lines."""
    at = time.time() if at is None else at
    return time.strftime("%H:%M:%S", time.localtime(at)) + f".{int(at % 1 * 1000):03d}"


def wait_until(predicate, timeout, poll=0.1):
    """Polls predicate until it returns a truthy value (returned) or timeout seconds pass (None)."""
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.time() >= deadline:
            return None
        time.sleep(poll)


def http(url, method="GET", body=None, timeout=2.0, headers=None):
    """(status, text); (None, '') when nothing answers."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, reply.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")
    except (OSError, ValueError):
        return None, ""


class LoadgenReader(threading.Thread):
    """Reads heartbeat-loadgen's stdout: keeps every line (in `path` and in `lines`), passes progress
    lines to `log` every 5 s (every one when verbose) and everything else always, notes when the
    load starts and the latest counters."""

    PROGRESS = re.compile(r"^t=(\d+)s sent=(\d+) ok=(\d+) errors=\[([^\]]*)\]")

    def __init__(self, popen, path, log, verbose=False):
        super().__init__(daemon=True)
        self.popen, self.path, self.log, self.verbose = popen, path, log, verbose
        self.started_at = None
        self.latest = {"sent": 0, "ok": 0, "errors": {}}
        self.lines = []

    def run(self):
        with open(self.path, "w") as out:
            for line in self.popen.stdout:
                line = line.rstrip("\n")
                out.write(line + "\n")
                out.flush()
                self.lines.append(line)
                match = self.PROGRESS.match(line)
                if match:
                    errors = dict((k, int(v)) for k, v in (e.split(":") for e in match.group(4).split()))
                    self.latest = {"sent": int(match.group(2)), "ok": int(match.group(3)), "errors": errors}
                    if self.verbose or int(match.group(1)) % 5 == 0:
                        self.log(f"loadgen | {line}")
                    continue
                if line.startswith("simulating "):
                    self.started_at = time.time()
                self.log(f"loadgen | {line}")


def errors_between(before, after):
    """The loadgen's error counters that grew between two of its progress snapshots."""
    keys = set(before["errors"]) | set(after["errors"])
    return {k: after["errors"].get(k, 0) - before["errors"].get(k, 0) for k in sorted(keys)
            if after["errors"].get(k, 0) - before["errors"].get(k, 0)}


# ---------------------------------------------------------------- processes and ports

def pid_alive(pid):
    """Exists and is not a zombie (processes reparented to PID 1 stay zombies for a while here)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def pid_tagged(pid, name, value):
    """The process carries name=value in its environment (so it is one of ours, not a reused pid)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f"{name}={value}".encode() in f.read().split(b"\0")
    except OSError:
        return False


def read_pid(path):
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def port_free(port, host="127.0.0.1"):
    """Nothing listens on host:port (bound with SO_REUSEADDR, as servers do, so TIME_WAIT does not count)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            return True
        except OSError:
            return False


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- the product's conventions

def device_bucket(device_id, buckets=16):
    """The Redis bucket of a device: FNV-1a 32 of its canonical id, mod BUCKETS (KeySchema.bucket)."""
    h = 2166136261
    for byte in device_id.encode():
        h = ((h ^ byte) * 16777619) & 0xFFFFFFFF
    return h % buckets


def log_summary(path):
    """Counts of error / critical log lines (swift-log text: `<time> <level> <label>: <metadata> [<module>] <message>`)
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


# ---------------------------------------------------------------- test processes

class Proc:
    """A gateway or monitor run by a test: its log, pid file entry and tag, and whether we ended it
    (any other exit is a crash). `tag` = (NAME, value) put in its environment, so leftovers of a
    SIGKILLed test can be told from reused pids (kill_leftovers)."""

    def __init__(self, name, argv, env, log_path, port, tag, pids_file, cwd):
        self.name, self.argv, self.env, self.log_path, self.port = name, argv, env, log_path, port
        self.tag, self.pids_file, self.cwd = tag, pids_file, cwd
        self.popen = None
        self.expected_exit = False
        self.crash_reported = False

    def start(self, extra_env=None):
        env = dict(os.environ, **self.env, **(extra_env or {}), **{self.tag[0]: self.tag[1]})
        with open(self.log_path, "a") as out:
            out.write(f"==== {self.name}: starting at {stamp()} ({' '.join(f'{k}={v}' for k, v in (extra_env or {}).items())})\n")
            out.flush()
            self.popen = subprocess.Popen(self.argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, cwd=self.cwd, start_new_session=True)
        self.expected_exit = False
        self.crash_reported = False
        with open(self.pids_file, "a") as f:
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

    def readyz(self):
        """(status, body dict) of its /readyz; (None, {}) when it does not answer."""
        if not self.alive:
            return None, {}
        status, body = http(f"http://127.0.0.1:{self.port}/readyz", timeout=0.5)
        try:
            return status, json.loads(body) if body else {}
        except ValueError:
            return status, {}


def kill_leftovers(pids_file, tag, log):
    """SIGKILLs the processes listed in pids_file that still carry tag=(NAME, value) (a previous run
    of the same test was itself killed), then removes the file."""
    try:
        pids = [int(p) for p in open(pids_file).read().split()]
    except (OSError, ValueError):
        return
    for pid in pids:
        if pid_alive(pid) and pid_tagged(pid, *tag):
            log(f"stopping pid {pid} left by an earlier run")
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    os.remove(pids_file)


def link_binaries(bin_dir, names, dest):
    """Hard-links (or copies) the executables into dest, so every start and restart of a run uses
    one build while a rebuild replaces bin_dir. Returns dest."""
    os.makedirs(dest, exist_ok=True)
    for name in names:
        target = os.path.join(dest, name)
        try:
            os.remove(target)
        except OSError:
            pass
        try:
            os.link(os.path.join(bin_dir, name), target)
        except OSError:
            shutil.copy2(os.path.join(bin_dir, name), target)
    return dest


class Watcher(threading.Thread):
    """Every 0.1 s: who leads (the monitors' /readyz) and whether a process died on its own. Every
    second: the monitors' counters, summed over each process's life (a SIGKILL loses them)."""

    COUNTERS = ("monitor_leader_terms_total", "monitor_storm_guard_trips_total", "monitor_kafka_delivery_errors_total",
                "monitor_apply_errors_total", "monitor_registry_reseeds_total", "monitor_reconcile_repaired_total",
                "monitor_devices_declared_offline_total", "monitor_events_published_total", "monitor_history_stream_overflow_total")

    def __init__(self, procs, monitors, stop_event, log):
        super().__init__(daemon=True)
        self.procs, self.monitors, self.stop_event, self.log = procs, monitors, stop_event, log
        self.leader = None
        self.changes = []          # (time, new leader name or None)
        self.both_leading = 0      # polls where more than one said leader:true
        self.crashes = []
        self.counters = {}         # pid -> {name: value}
        self.last_metrics = 0

    def run(self):
        while not self.stop_event.is_set():
            try:
                self.poll()
            except Exception as error:  # never let the watcher die silently
                self.log(f"watcher: {error!r}")
            self.stop_event.wait(0.1)

    def leaders(self):
        return [m for m in self.monitors if m.readyz()[1].get("leader") is True]

    def poll(self):
        for proc in self.procs:
            if proc.popen is not None and not proc.alive and not proc.expected_exit and not proc.crash_reported:
                proc.crash_reported = True
                self.crashes.append((time.time(), proc.name, proc.popen.returncode))
                self.log(f"CRASH: {proc.name} (pid {proc.popen.pid}) exited with {proc.popen.returncode}; log {proc.log_path}:\n{proc.tail()}")
        lead = [m.name for m in self.leaders()]
        if len(lead) > 1:
            self.both_leading += 1
        current = lead[0] if len(lead) == 1 else (self.leader if lead else None)
        if current != self.leader:
            self.changes.append((time.time(), current))
            self.leader = current
        if time.time() - self.last_metrics >= 1:
            self.last_metrics = time.time()
            for m in self.monitors:
                if not m.alive:
                    continue
                status, text = http(f"http://127.0.0.1:{m.port}/metrics", timeout=1)
                if status != 200:
                    continue
                self.counters[m.popen.pid] = {name: sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)", text, re.M))
                                              for name in self.COUNTERS}

    def total(self, name):
        return int(sum(v.get(name, 0) for v in self.counters.values()))

    def longest_leaderless(self):
        gaps, last = [], None
        for t, who in self.changes:
            if who is None:
                last = t
            elif last is not None:
                gaps.append(t - last)
                last = None
        return max(gaps, default=0)


# ---------------------------------------------------------------- audits from PostgreSQL and Kafka

def psql_runner(url):
    """A psql(sql) -> rows function for a PostgreSQL URL."""
    def psql(sql, timeout=30):
        result = subprocess.run(["psql", url, "-XAtq", "-v", "ON_ERROR_STOP=1", "-F", "\t", "-c", sql],
                                capture_output=True, text=True, timeout=timeout, env=dict(os.environ, PGCONNECT_TIMEOUT="5"))
        if result.returncode != 0:
            raise RuntimeError(f"psql: {result.stderr.strip()}")
        return [line.split("\t") for line in result.stdout.splitlines()]
    return psql


def pg_audit(psql, fleet, silent_ids, accepted, bound, silence_at, faults, explain_fault=None):
    """What chaos.py checks in PostgreSQL after a run, for the loadgen's fleet (device ids in
    registration order; the first len(silent_ids) fell silent at silence_at): every accepted
    heartbeat in heartbeat_history once (deduplicated as the ops API reads), one device.online per
    device (plus one after each false offline), exactly one device.offline per silent device within
    `bound` s of its last heartbeat and none for a live one (false offlines grouped by the fault, a
    dict with kind, t and start, that began last before them; explain_fault(fault) may add words),
    devices.status as expected, the outbox drained. Returns (problems, figures); figures["outbox_ids"]
    is the set of outbox event ids (for kafka_audit)."""
    problems, fig = [], {}
    index = {device: i for i, device in enumerate(fleet)}
    silent = set(silent_ids)
    fleet_sql = "(" + ",".join(f"'{d}'" for d in fleet) + ")"

    def history():
        row = psql(f"""SELECT count(*), (SELECT count(*) FROM (SELECT DISTINCT device_id, received_at, entry_id FROM heartbeat_history
                                                               WHERE device_id IN {fleet_sql}) x)
                       FROM heartbeat_history WHERE device_id IN {fleet_sql}""")[0]
        return int(row[0]), int(row[1])
    counts = wait_until(lambda: (lambda c: c if c[1] >= accepted else None)(history()), 30, poll=0.5) or history()
    fig["history_raw"], fig["history_dedup"] = counts
    fig["history_duplicates"] = counts[0] - counts[1]
    fig["history_short_by"] = max(0, accepted - counts[1])
    if counts[1] != accepted:
        problems.append(f"heartbeat_history holds {counts[1]} distinct heartbeats of the fleet (raw {counts[0]}), accepted {accepted}"
                        + (" (more than accepted: heartbeats recorded whose reply the loadgen did not get as 200)" if counts[1] > accepted
                           else f" (LOST: {accepted - counts[1]} accepted heartbeats missing)"))

    events = psql(f"""SELECT device_id, from_status, to_status, extract(epoch FROM at - last_heartbeat), extract(epoch FROM at)
                      FROM device_status_events WHERE device_id IN {fleet_sql} ORDER BY id""")
    online_n, offline_n, false_n = {}, {}, {}
    delays, false_offline = [], []
    for device, _from, to, delay, at in events:
        if to == "online":
            online_n[device] = online_n.get(device, 0) + 1
        elif to == "offline":
            offline_n[device] = offline_n.get(device, 0) + 1
            if device in silent and float(at) >= silence_at:
                delays.append(float(delay))
            else:
                false_n[device] = false_n.get(device, 0) + 1
                false_offline.append((float(at), device, float(delay)))
    groups = {}
    for at, device, delay in false_offline:
        cause = max((f for f in faults if f["start"] <= at), key=lambda f: f["start"], default=None)
        key = (f"{at - cause['start']:.2f} s after the {cause['kind']} began (t={cause['t']}s)" + (explain_fault(cause) if explain_fault else "")
               if cause else "before any fault")
        groups.setdefault(key, []).append((at, device, delay))
    fig["false_offline"] = len(false_offline)
    for key, items in groups.items():
        problems.append(f"{len(items)} live devices declared offline at {stamp(items[0][0])}–{stamp(items[-1][0])}, {key}; "
                        f"silence {min(i[2] for i in items):.2f}–{max(i[2] for i in items):.2f} s; e.g. "
                        + ", ".join(f"{d} (loadgen-{index.get(d)}, bucket {device_bucket(d)})" for _, d, _ in items[:3]))
    for device in fleet:
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

    status = dict(psql(f"SELECT id, status FROM devices WHERE id IN {fleet_sql}"))
    wrong = [d for d in fleet if status.get(d) != ("offline" if d in silent else "online")]
    if wrong:
        problems.append(f"{len(wrong)} devices with the wrong status in devices (e.g. {wrong[0]}: {status.get(wrong[0])}, "
                        f"expected {'offline' if wrong[0] in silent else 'online'})")

    def unpublished():
        return int(psql("SELECT count(*) FROM outbox WHERE published_at IS NULL")[0][0])
    t0 = time.time()
    drained = wait_until(lambda: unpublished() == 0, 60, poll=0.5)
    fig["outbox_rows"] = int(psql("SELECT count(*) FROM outbox")[0][0])
    fig["outbox_unpublished"] = unpublished()
    fig["outbox_drain_wait_s"] = round(time.time() - t0, 1)
    if not drained:
        problems.append(f"outbox not drained: {fig['outbox_unpublished']} rows unpublished 60 s after the run")
    missing = int(psql("SELECT count(*) FROM device_status_events e WHERE NOT EXISTS (SELECT 1 FROM outbox o WHERE o.event_id = e.event_id)")[0][0])
    if missing:
        problems.append(f"{missing} status events without an outbox row")
    fig["outbox_ids"] = {row[0] for row in psql("SELECT event_id FROM outbox")}
    return problems, fig


def kafka_audit(brokers, outbox_ids):
    """Reads both topics from the beginning with kcat: every outbox event there, none other.
    Returns (problems, figures)."""
    if not shutil.which("kcat"):
        return [], {"kafka": "kcat not installed: events on Kafka not read"}
    seen = []
    for topic in ("device.online", "device.offline"):
        try:
            out = subprocess.run(["kcat", "-C", "-b", brokers, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%s\\n"],
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
