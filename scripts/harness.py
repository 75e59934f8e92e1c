"""What scripts/chaos.py, scripts/deployment.py and scripts/cluster_test.py share: timestamps, logging,
polling, plain HTTP, pids, ports, services.sh, the loadgen, faults on a schedule, test processes and
their watcher, the audits from PostgreSQL and Kafka, the end of a run."""
import fcntl
import heapq
import itertools
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import traceback
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVICES = os.path.join(ROOT, "scripts", "services.sh")
print_lock = threading.Lock()


class HarnessError(Exception):
    """Something did not start or answer: not a finding about the system."""


class Interrupted(BaseException):
    pass


def stamp(at=None):
    """Local wall time with milliseconds, for progress lines."""
    at = time.time() if at is None else at
    return time.strftime("%H:%M:%S", time.localtime(at)) + f".{int(at % 1 * 1000):03d}"


def logger(prefix, t_start):
    """log(message): `<prefix>: <time> [<seconds since t_start>s] <message>`, one line at a time."""
    def log(message):
        with print_lock:
            print(f"{prefix}: {stamp()} [{time.time() - t_start:6.1f}s] {message}", flush=True)
    return log


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


def readyz(port, timeout=0.5):
    """(status, body dict) of a gateway's or monitor's /readyz on loopback; (None, {}) when it does not answer."""
    status, body = http(f"http://127.0.0.1:{port}/readyz", timeout=timeout)
    try:
        return status, json.loads(body) if body else {}
    except ValueError:
        return status, {}


def tail(path, n=20):
    """The last n lines of a log file ('' when it cannot be read)."""
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def remove_file(path):
    try:
        os.remove(path)
    except OSError:
        pass


# ---------------------------------------------------------------- runs: tools, run dir, signals, the end

def require_tools(*tools):
    for tool in tools:
        if not shutil.which(tool):
            raise HarnessError(f"{tool} missing: run scripts/install-deps.sh")


def require_binaries(bin_dir, names):
    for name in names:
        if not os.access(os.path.join(bin_dir, name), os.X_OK):
            raise HarnessError(f"{os.path.join(bin_dir, name)} missing: swift build, or --bin DIR")


def lock_run_dir(run_dir, name):
    """Creates run_dir and takes the exclusive lock file `name` in it: the open file (keep it), or None
    when another run holds it."""
    os.makedirs(run_dir, exist_ok=True)
    lock = open(os.path.join(run_dir, name), "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        return None
    return lock


def _raise_interrupted(signum, _frame):
    raise Interrupted(signum)


def raise_on_signals():
    """SIGINT, SIGTERM and SIGHUP raise Interrupted (so everything started is stopped on the way out)."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_interrupted)


def ignore_signals():
    """While stopping everything: no more Interrupted."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)


def failure(error, log, procs=(), tail_lines=0):
    """The exit status for what ended a run: 130 interrupted; 2 for a HarnessError (logged with the
    log paths of procs, None skipped, and the last tail_lines lines of each one started) or anything
    else (its traceback printed). Re-raises what is neither (SystemExit, KeyboardInterrupt)."""
    if isinstance(error, Interrupted):
        log(f"interrupted (signal {error}): stopping everything")
        return 130
    if isinstance(error, HarnessError):
        log(f"ERROR: {error}")
        for proc in procs:
            if proc is None:
                continue
            log(f"  log of {proc.name}: {proc.log_path}")
            if tail_lines and proc.popen is not None:
                for line in proc.tail(tail_lines).splitlines():
                    log(f"    | {line}")
        return 2
    if not isinstance(error, Exception):
        raise error
    traceback.print_exc()
    log(f"ERROR: {error!r}")
    return 2


def conclude(lines, warnings, problems, logs, t_start, limit=30):
    """Prints the summary lines, the warnings and the verdict (on failure at most `limit` problems and
    the paths of the logs); returns the exit status: 1 failed, 0 passed."""
    lines = lines + [f"WARNING: {w}" for w in warnings]
    if problems:
        lines.append("RESULT: FAILED")
        lines += [f"  - {p}" for p in problems[:limit]]
        lines.append(f"  logs: {', '.join(logs)}")
        code = 1
    else:
        lines.append(f"RESULT: PASSED in {time.time() - t_start:.0f} s")
        code = 0
    with print_lock:
        print("\n".join(lines), flush=True)
    return code


# ---------------------------------------------------------------- services (scripts/services.sh)

def service_env(run_dir, redis_port, pg_port, **extra):
    """The environment of services.sh for a private set of services in run_dir (KAFKA_MOCK_ARGS of
    the caller's environment dropped)."""
    env = dict(os.environ, HEARTBEAT_RUN_DIR=run_dir, REDIS_PORT=str(redis_port), PG_PORT=str(pg_port), **extra)
    env.pop("KAFKA_MOCK_ARGS", None)
    return env


def run_services(env, *argv, timeout=120, check=True):
    """scripts/services.sh argv…: the finished process; HarnessError when it fails (with check)."""
    result = subprocess.run([SERVICES, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise HarnessError(f"services.sh {' '.join(argv)} failed ({result.returncode}): {result.stdout.strip()} {result.stderr.strip()}")
    return result


def service_urls(env, *names, keys=("REDIS_URL", "POSTGRES_URL", "KAFKA_BROKERS"), timeout=120):
    """The URLs `services.sh env names…` exports; HarnessError when one of keys is missing."""
    out = run_services(env, "env", *names, timeout=timeout).stdout
    urls = dict(line.replace("export ", "", 1).split("=", 1) for line in out.splitlines() if line.startswith("export "))
    for key in keys:
        if key not in urls:
            raise HarnessError(f"services.sh env gave no {key}")
    return urls


def stop_services(env, log, *names):
    """services.sh stop names… at the end of a run: its lines logged, a failure only logged."""
    try:
        for line in run_services(env, "stop", *names, check=False).stdout.splitlines():
            log(line)
    except Exception as error:
        log(f"services.sh stop failed: {error}")


def psql(url, sql, timeout=30):
    """Rows (lists of strings) of one statement; RuntimeError when psql fails."""
    result = subprocess.run(["psql", url, "-XAtq", "-v", "ON_ERROR_STOP=1", "-F", "\t", "-c", sql],
                            capture_output=True, text=True, timeout=timeout, env=dict(os.environ, PGCONNECT_TIMEOUT="5"))
    if result.returncode != 0:
        raise RuntimeError(f"psql: {result.stderr.strip()}")
    return [line.split("\t") for line in result.stdout.splitlines()]


def psql_runner(url):
    """A psql(sql) -> rows function for a PostgreSQL URL."""
    def run(sql, timeout=30):
        return psql(url, sql, timeout)
    return run


# ---------------------------------------------------------------- the loadgen

def add_load_arguments(parser, duration_help):
    """The options of a run's load: --devices, --interval, --duration, --silent-fraction and the
    monitors' --offline-after and --scan-interval."""
    parser.add_argument("--devices", type=int, help="fleet size (default 300, --short 100)")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between a device's heartbeats (default 0.5)")
    parser.add_argument("--duration", type=float, help=duration_help)
    parser.add_argument("--silent-fraction", type=float, default=0.1, help="share of the fleet that stops at mid-run (default 0.1)")
    parser.add_argument("--offline-after", type=float, default=2.0, help="OFFLINE_AFTER_SECONDS (default 2)")
    parser.add_argument("--scan-interval", type=float, default=0.5, help="SCAN_INTERVAL_SECONDS (default 0.5)")


def loadgen_argv(binary, gateways, admin, devices, interval, duration, silent_fraction, offline_after, scan_interval, slack,
                 devices_file, report_file, admin_token=None, number=str):
    """heartbeat-loadgen's command line for a run: its fleet, load and audit; `number` formats the
    durations and fractions."""
    return [binary, *[a for g in gateways for a in ("--gateway", g)], "--admin", admin,
            *(["--admin-token", admin_token] if admin_token else []), "--devices", str(devices), "--interval", number(interval), "--duration", number(duration),
            "--silent-fraction", number(silent_fraction), "--offline-after", number(offline_after),
            "--scan-interval", number(scan_interval), "--slack", number(slack), "--audit-sample", str(max(1000, devices)),
            "--save-devices", devices_file, "--json", report_file]


def start_load(args, binary, gateways, admin, admin_token, run_dir, tag, pids_file, log):
    """Starts heartbeat-loadgen for the load of args (add_load_arguments, --slack, --verbose) with its
    files in run_dir (devices.tsv and loadgen.json, removed first; its output in loadgen.log) and its
    pid appended to pids_file, and the reader of its output. Returns (loadgen, reader, devices file,
    report file); the caller waits for the load to start (reader.wait_started)."""
    devices_file = os.path.join(run_dir, "devices.tsv")
    report_file = os.path.join(run_dir, "loadgen.json")
    for path in (devices_file, report_file):
        remove_file(path)
    argv = loadgen_argv(binary, gateways, admin, args.devices, args.interval, args.duration, args.silent_fraction,
                        args.offline_after, args.scan_interval, args.slack, devices_file, report_file, admin_token=admin_token)
    log("loadgen: " + " ".join(argv))
    loadgen = start_loadgen(argv, run_dir, {tag[0]: tag[1]}, pids_file)
    reader = LoadgenReader(loadgen, os.path.join(run_dir, "loadgen.log"), log, args.verbose)
    reader.start()
    return loadgen, reader, devices_file, report_file


def start_loadgen(argv, cwd, env, pid_file, mode="a"):
    """Starts the loadgen line-buffered (its stdout a pipe) with env added to ours, and writes its pid
    to pid_file (appended with mode "a"). Returns the Popen."""
    loadgen = subprocess.Popen(["stdbuf", "-oL", *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd,
                               start_new_session=True, env=dict(os.environ, **env))
    with open(pid_file, mode) as f:
        f.write(f"{loadgen.pid}\n")
    return loadgen


def stop_loadgen(loadgen):
    """SIGTERM, then SIGKILL after 10 s, when it still runs."""
    if loadgen is not None and loadgen.poll() is None:
        loadgen.terminate()
        try:
            loadgen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            loadgen.kill()


def stop_run(stop_event, loadgen, procs):
    """At the end of a run: its threads told to stop, the loadgen stopped, then each process started
    (None skipped)."""
    stop_event.set()
    stop_loadgen(loadgen)
    for proc in procs:
        if proc is not None:
            proc.stop()


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

    def wait_started(self, shown_path=None):
        """The time the load started; HarnessError when it has not within 120 s (or the loadgen exited)."""
        if not wait_until(lambda: self.started_at or self.popen.poll() is not None, 120, poll=0.05) or self.started_at is None:
            raise HarnessError(f"the loadgen did not start beating within 120 s (exit {self.popen.poll()}); see {shown_path or self.path}")
        return self.started_at


def errors_between(before, after):
    """The loadgen's error counters that grew between two of its progress snapshots."""
    keys = set(before["errors"]) | set(after["errors"])
    return {k: after["errors"].get(k, 0) - before["errors"].get(k, 0) for k in sorted(keys)
            if after["errors"].get(k, 0) - before["errors"].get(k, 0)}


def errors_delta(before, after):
    """errors_between as text: `code:count …`, or none."""
    return " ".join(f"{k}:{v}" for k, v in errors_between(before, after).items()) or "none"


def read_fleet(devices_file, silent_fraction):
    """(fleet, silent ids, live ids) from the loadgen's --save-devices file: the first
    silent_fraction of the fleet (rounded) falls silent at mid-run."""
    fleet = [line.split("\t")[0] for line in open(devices_file).read().splitlines() if line]
    silent_count = int(math.floor(len(fleet) * silent_fraction + 0.5))
    return fleet, fleet[:silent_count], fleet[silent_count:]


def wait_loadgen(loadgen, reader, timeout):
    """Waits for the loadgen to finish its audit and for its output to be read."""
    try:
        loadgen.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise HarnessError("the loadgen did not finish its audit within 300 s")
    reader.join(timeout=10)


def read_report(report_file):
    """The loadgen's JSON report ({} when it wrote none)."""
    try:
        return json.load(open(report_file))
    except (OSError, ValueError):
        return {}


def loadgen_report(rc, report_file, log):
    """Logs the finished loadgen's JSON report and audit; returns (report, problems): a problem when
    it exited (rc) without an audit or its audit failed."""
    report = read_report(report_file)
    audit = report.get("audit", {})
    log(f"loadgen exited {rc}: audit {'PASSED' if audit.get('passed') else 'FAILED'}; JSON report {report_file}")
    log(f"  report: {json.dumps({k: v for k, v in report.items() if k != 'audit'}, sort_keys=True)}")
    log(f"  audit: {json.dumps(audit, sort_keys=True)[:2000]}")
    problems = []
    if rc not in (0, 3) or not audit:
        problems.append(f"the loadgen exited {rc} without an audit")
    elif not audit.get("passed"):
        problems.append("the loadgen's audit failed: " + "; ".join(audit.get("problems", [])[:5]))
    return report, problems


def park_at_end(load_end, park, warn_after=None, log=None):
    """At the end of the load, 0.3, 0.8 and 1.3 s after it (once the last heartbeats are in), calls
    park(); warns when the first is later than warn_after (the earliest end-of-load staleness)."""
    for offset in (0.3, 0.8, 1.3):
        time.sleep(max(0, load_end + offset - time.time()))
        if offset == 0.3 and warn_after is not None and time.time() > warn_after:
            log("WARNING: parking later than the earliest end-of-load staleness; an end-of-load offline may be counted")
        park()


def park_commands(device_ids, buckets=16):
    """(bucket, key, ZADD argv) per bucket that scores its devices an hour ahead in its online set
    (XX: never re-adds one), so the end of the load declares none of them offline."""
    ahead = int(time.time() * 1000) + 3_600_000
    by_bucket = {}
    for device in device_ids:
        by_bucket.setdefault(device_bucket(device, buckets), []).append(device)
    for b, ids in by_bucket.items():
        key = f"hb:{{{b}}}:online"
        argv = ["ZADD", key, "XX", "CH"]
        for device in ids:
            argv += [str(ahead), device]
        yield b, key, argv


class Schedule:
    """Faults at offsets (seconds) from the start of the load, run in turn; a fault may schedule more."""

    def __init__(self):
        self.queue = []
        self.seq = itertools.count()

    def at(self, offset, name, fn):
        heapq.heappush(self.queue, (offset, next(self.seq), name, fn))

    def describe(self):
        return ", ".join(f"{name} t={at:.1f}s" for at, _, name, _ in sorted(self.queue))

    def run(self, load_t0, loadgen, loadgen_log, log):
        """Runs each fault at its time (HarnessError once the loadgen has exited); yields (time it
        began, record) for each fault that returns a record."""
        while self.queue:
            at, _, name, fn = heapq.heappop(self.queue)
            delay = load_t0 + at - time.time()
            if delay > 0:
                time.sleep(delay)
            if loadgen.poll() is not None:
                raise HarnessError(f"the loadgen exited ({loadgen.returncode}) during the faults; see {loadgen_log}")
            late = time.time() - (load_t0 + at)
            if late > 1:
                log(f"({name} {late:.1f} s late)")
            began = time.time()
            record = fn()
            if record:
                yield began, record


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


_ports_handed_out = set()


def free_port():
    """A free loopback port, never one this process handed out before: the kernel may offer a port
    it just released again, and two servers told the same port collide (a chaos run's gateway and
    monitor once did)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _ports_handed_out:
            _ports_handed_out.add(port)
            return port


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


def log_summary_lines(procs):
    """A summary line per process (its log's error and critical lines, the most frequent messages)."""
    lines = []
    for proc in procs:
        counts, top = log_summary(proc.log_path)
        lines.append(f"  {proc.name} log: {counts['error']} error, {counts['critical']} critical lines"
                     + "".join(f"\n      {n}× {m}" for m, n in top))
    return lines


# ---------------------------------------------------------------- test processes

class Proc:
    """A gateway or monitor run by a test: its log, pid file entry and tag, and whether we ended it
    (any other exit is a crash). `tag` = (NAME, value) put in its environment, so leftovers of a
    SIGKILLed test can be told from reused pids (kill_leftovers). `starter` names the script in the
    line its log gets at each start."""

    def __init__(self, name, argv, env, log_path, port, tag, pids_file, cwd, starter=None):
        self.name, self.argv, self.env, self.log_path, self.port = name, argv, env, log_path, port
        self.tag, self.pids_file, self.cwd, self.starter = tag, pids_file, cwd, starter
        self.popen = None
        self.expected_exit = False
        self.crash_reported = False

    def start(self, extra_env=None):
        env = dict(os.environ, **self.env, **(extra_env or {}), **{self.tag[0]: self.tag[1]})
        what = f"{self.starter}: starting {self.name}" if self.starter else f"{self.name}: starting"
        with open(self.log_path, "a") as out:
            out.write(f"==== {what} at {stamp()} ({' '.join(f'{k}={v}' for k, v in (extra_env or {}).items())})\n")
            out.flush()
            self.popen = subprocess.Popen(self.argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, cwd=self.cwd, start_new_session=True)
        # only now: until the new process replaces it, the watcher must still see the killed one as expected
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
        return tail(self.log_path, n)

    def readyz(self):
        """(status, body dict) of its /readyz; (None, {}) when it does not answer."""
        if not self.alive:
            return None, {}
        return readyz(self.port)


def kill_leftovers(pids_file, tag, log, by="an earlier run"):
    """SIGKILLs the processes listed in pids_file that still carry tag=(NAME, value) (a previous run
    of the same test was itself killed), then removes the file."""
    try:
        pids = [int(p) for p in open(pids_file).read().split()]
    except (OSError, ValueError):
        return
    for pid in pids:
        if pid_alive(pid) and pid_tagged(pid, *tag):
            log(f"stopping pid {pid} left by {by}")
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


class LeaderWatcher(threading.Thread):
    """The loop of a test's watcher (poll() every 0.1 s until stop_event, an error logged, never
    fatal) and what it keeps: who leads and when that changed, polls with more than one leader,
    processes that died on their own. Subclasses define poll()."""

    def __init__(self, stop_event, log):
        super().__init__(daemon=True)
        self.stop_event, self.log = stop_event, log
        self.leader = None
        self.changes = []          # (time, new leader name or None)
        self.both_leading = 0      # polls where more than one said leader:true
        self.crashes = []          # (time, name, exit status)

    def run(self):
        while not self.stop_event.is_set():
            try:
                self.poll()
            except Exception as error:  # never let the watcher die silently
                self.log(f"watcher: {error!r}")
            self.stop_event.wait(0.1)

    def note_leaders(self, lead):
        """lead: the names of the monitors that say leader:true now."""
        if len(lead) > 1:
            self.both_leading += 1
        current = lead[0] if len(lead) == 1 else (self.leader if lead else None)
        if current != self.leader:
            self.changes.append((time.time(), current))
            self.leader = current

    def note_crashes(self, procs, shown=lambda path: path):
        """Records and logs (with its log's tail) each process that exited without being ended."""
        for proc in procs:
            if proc.popen is not None and not proc.alive and not proc.expected_exit and not proc.crash_reported:
                proc.crash_reported = True
                self.crashes.append((time.time(), proc.name, proc.popen.returncode))
                self.log(f"CRASH: {proc.name} (pid {proc.popen.pid}) exited with {proc.popen.returncode}; log {shown(proc.log_path)}:\n{proc.tail()}")

    def longest_leaderless(self):
        gaps, last = [], None
        for t, who in self.changes:
            if who is None:
                last = t
            elif last is not None:
                gaps.append(t - last)
                last = None
        return max(gaps, default=0)


class Watcher(LeaderWatcher):
    """Every 0.1 s: who leads (the monitors' /readyz) and whether a process died on its own. Every
    second: the monitors' counters, summed over each process's life (a SIGKILL loses them)."""

    COUNTERS = ("monitor_leader_terms_total", "monitor_storm_guard_trips_total", "monitor_kafka_delivery_errors_total",
                "monitor_apply_errors_total", "monitor_registry_reseeds_total", "monitor_reconcile_repaired_total",
                "monitor_devices_declared_offline_total", "monitor_events_published_total", "monitor_history_stream_overflow_total")

    def __init__(self, procs, monitors, stop_event, log):
        super().__init__(stop_event, log)
        self.procs, self.monitors = procs, monitors
        self.counters = {}         # pid -> {name: value}
        self.last_metrics = 0

    def leaders(self):
        return [m for m in self.monitors if m.readyz()[1].get("leader") is True]

    def poll(self):
        self.note_crashes(self.procs)
        self.note_leaders([m.name for m in self.leaders()])
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


# ---------------------------------------------------------------- audits from PostgreSQL and Kafka

def pg_audit(psql, fleet, silent_ids, accepted, bound, silence_at, faults, explain_fault=None, whole_tables=False):
    """What chaos.py and cluster_test.py check in PostgreSQL after a run, for the loadgen's fleet
    (device ids in registration order; the first len(silent_ids) fell silent at silence_at): every
    accepted heartbeat in heartbeat_history once (deduplicated as the ops API reads), one
    device.online per device (plus one after each false offline), exactly one device.offline per
    silent device within `bound` s of its last heartbeat and none for a live one (false offlines
    grouped by the fault, a dict with kind, t and start, that began last before them;
    explain_fault(fault) may add words), devices.status as expected, the outbox drained. With
    whole_tables (chaos.py: its fresh database holds the loadgen's devices alone) the tables are
    read whole, history rows of any device not named loadgen-… are a problem and the messages keep
    chaos.py's wording; otherwise only the fleet's rows are read. Returns (problems, figures);
    figures["outbox_ids"] is the set of outbox event ids (for kafka_audit)."""
    problems, fig = [], {}
    index = {device: i for i, device in enumerate(fleet)}
    silent = set(silent_ids)
    fleet_sql = "(" + ",".join(f"'{d}'" for d in fleet) + ")"
    of_fleet = "" if whole_tables else f" WHERE device_id IN {fleet_sql}"

    def history():
        row = psql(f"""SELECT count(*), (SELECT count(*) FROM (SELECT DISTINCT device_id, received_at, entry_id FROM heartbeat_history
                                                               {of_fleet}) x)
                       FROM heartbeat_history{of_fleet}""")[0]
        return int(row[0]), int(row[1])
    counts = wait_until(lambda: (lambda c: c if c[1] >= accepted else None)(history()), 30, poll=0.5) or history()
    fig["history_raw"], fig["history_dedup"] = counts
    fig["history_duplicates"] = counts[0] - counts[1]
    fig["history_short_by"] = max(0, accepted - counts[1])
    if counts[1] != accepted:
        problems.append(f"heartbeat_history holds {counts[1]} distinct heartbeats{'' if whole_tables else ' of the fleet'} (raw {counts[0]}), "
                        f"accepted {accepted}"
                        + (" (more than accepted: heartbeats recorded whose reply the loadgen did not get as 200)" if counts[1] > accepted
                           else " (LOST heartbeats)" if whole_tables else f" (LOST: {accepted - counts[1]} accepted heartbeats missing)"))
    if whole_tables:
        foreign = int(psql("SELECT count(*) FROM heartbeat_history h WHERE NOT EXISTS "
                           "(SELECT 1 FROM devices d WHERE d.id = h.device_id AND d.name LIKE 'loadgen-%')")[0][0])
        if foreign:
            problems.append(f"{foreign} history rows of devices not in the fleet")

    events = psql(f"""SELECT device_id, from_status, to_status, extract(epoch FROM at - last_heartbeat), extract(epoch FROM at)
                      FROM device_status_events{of_fleet} ORDER BY id""")
    online_n, offline_n, false_n = {}, {}, {}
    delays, false_offline = [], []
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
                        + ", ".join(f"{d} (loadgen-{index.get(d)}" + ("" if whole_tables else f", bucket {device_bucket(d)}") + ")"
                                    for _, d, _ in items[:3]))
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

    status = dict(psql("SELECT id, status FROM devices WHERE " + ("name LIKE 'loadgen-%'" if whole_tables else f"id IN {fleet_sql}")))
    wrong = [d for d in fleet if status.get(d) != ("offline" if d in silent else "online")]
    if wrong:
        problems.append(f"{len(wrong)} devices with the wrong status in devices (e.g. {wrong[0]}: {status.get(wrong[0])}, "
                        f"expected {'offline' if wrong[0] in silent else 'online'})")

    # outbox: every event there, all published once Kafka is back
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
