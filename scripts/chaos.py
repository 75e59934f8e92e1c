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
import argparse, os, shutil, signal, subprocess, sys, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402  (after the path insert)
from harness import HarnessError, stamp  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ADMIN_TOKEN = "chaos-admin-token-0123456789"
BUCKETS = 16

parser = argparse.ArgumentParser(description=__doc__.split("\nusage:")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--short", action="store_true", help="short run for make test (100 devices, 60 s, each fault once)")
parser.add_argument("--bin", default=os.path.join(ROOT, ".build", "debug"), help="directory of heartbeat-ingest, -monitor, -loadgen (default .build/debug)")
parser.add_argument("--run-dir", help="services and logs (default .run/chaos, --short .run/chaos-short)")
parser.add_argument("--redis-port", type=int, help="private Redis (default 6396, --short 6398)")
parser.add_argument("--pg-port", type=int, help="private PostgreSQL (default 5446, --short 5448)")
harness.add_load_arguments(parser, "load run length in seconds (default 180, --short 60)")
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
TAG = ("CHAOS_RUN_DIR", RUN)  # in the environment of every process started here (kill_leftovers)
T_START = time.time()
stop_event = threading.Event()
log = harness.logger("chaos", T_START)


def wait_until(predicate, timeout, poll=0.05):
    """Polls predicate (every 50 ms here) until it is truthy (returned) or timeout seconds pass (None)."""
    return harness.wait_until(predicate, timeout, poll)


# ---------------------------------------------------------------- services

service_env = harness.service_env(RUN, args.redis_port, args.pg_port, REDIS_APPENDONLY="yes")


def services(*argv, timeout=120):
    return harness.run_services(service_env, *argv, timeout=timeout).stdout


def psql(sql, timeout=30):
    return harness.psql(urls["POSTGRES_URL"], sql, timeout)


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


# ---------------------------------------------------------------- faults

faults = []  # dicts: kind, at (relative to the load start), figures
schedule = harness.Schedule()


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
    gw = wait_until(lambda: gateway.readyz()[0] == 200, 30)
    gw_at = time.time()
    lead = wait_until(watcher.leaders, 30)
    lead_at = time.time()
    keys = redis_cli("DBSIZE")
    record = {"kind": "redis restart", "down_s": round(started - t0, 2), "stop_s": round(stopped - t0, 2), "gateway_ready_s": round(gw_at - t0, 2) if gw else None,
              "leader_s": round(lead_at - t0, 2) if lead else None, "leader": lead[0].name if lead else None}
    log(f"FAULT redis restart: stop {stamp(t0)}–{stamp(stopped)} (AOF flushed), pause {args.redis_down} s, started {stamp(started)}: down {record['down_s']} s; "
        f"gateway ready after {record['gateway_ready_s']} s; leader {record['leader']} after {record['leader_s']} s; {keys} keys back")
    if record["gateway_ready_s"] and record["gateway_ready_s"] > REDIS_OUTAGE_SAFE:
        log(f"  (an outage over {REDIS_OUTAGE_SAFE:.2f} s can leave a live device's last heartbeat older than OFFLINE_AFTER when Redis is back)")
    timer = threading.Timer(3, lambda: log(f"  redis restart: loadgen answers other than 200 since it began: {harness.errors_delta(before, reader.latest)}"))
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
    lead = wait_until(watcher.leaders, 60, poll=0.02)
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
    lead = wait_until(watcher.leaders, 10)
    if not lead:
        log("FAULT leader kill: no leader to kill (skipped)")
        return {"kind": "leader kill", "skipped": True}
    victim = lead[0]
    survivor = next(m for m in monitors.values() if m is not victim)
    t0 = time.time()
    victim.kill()
    taken = wait_until(lambda: survivor.alive and survivor.readyz()[1].get("leader") is True, 30, poll=0.02)
    record = {"kind": "leader kill", "victim": victim.name, "failover_s": round(time.time() - t0, 2) if taken else None,
              "new_leader": survivor.name if taken else None}
    log(f"FAULT leader kill: SIGKILL {victim.name} (pid {victim.popen.pid}) at {stamp(t0)}; "
        f"{survivor.name} leads after {record['failover_s']} s")
    schedule.at(time.time() - load_t0 + args.restart_after, f"restart {victim.name}", lambda: restart_monitor(victim))
    return record


incarnation = {"a": 1, "b": 1}


def restart_monitor(proc):
    incarnation[proc.name[-1]] += 1
    instance = f"chaos-{proc.name[-1]}.{incarnation[proc.name[-1]]}"
    proc.start({"MONITOR_INSTANCE_ID": instance})
    ready = wait_until(lambda: proc.readyz()[0] == 200, 30)
    log(f"  {proc.name} started again as {instance} (pid {proc.popen.pid}), {'ready' if ready else 'NOT ready'}; "
        f"leader: {', '.join(m.name for m in watcher.leaders()) or 'none'}")
    return None


def build_schedule():
    d, mid = args.duration, args.duration / 2
    window_end = mid + args.offline_after + args.scan_interval + args.slack
    kinds = {"redis": fault_redis, "postgres": fault_postgres, "leader": fault_leader_kill}

    def place(kind, at):
        if kind == "kafka":
            down = min(args.kafka_down, 10)
            schedule.at(at, "kafka down", fault_kafka_down)
            schedule.at(at + down, "kafka up", fault_kafka_up)
        else:
            schedule.at(at, kind, kinds[kind])

    def spread(kinds_in_order, start, end):
        for i, kind in enumerate(kinds_in_order):
            place(kind, start + i * (end - start) / max(1, len(kinds_in_order) - 1))

    if args.short:
        spread(["redis", "postgres"], 8, mid - 11)
    else:
        spread(["redis", "postgres", "kafka", "leader"], 12, mid - 12)
    # the detection window of the silent devices: Kafka down over all of it, the leader killed inside
    schedule.at(mid - 4, "kafka down (window)", fault_kafka_down)
    schedule.at(mid + args.offline_after / 2, "leader (window)", fault_leader_kill)
    schedule.at(window_end + 3, "kafka up (window)", fault_kafka_up)
    if not args.short:
        spread(["redis", "postgres", "leader", "kafka"], window_end + 8, d - 25)
    return window_end


# ---------------------------------------------------------------- checks

def park_live_devices(live_ids):
    """Scores the live devices an hour ahead in the online sets (ZADD XX: never re-adds one)."""
    updated = 0
    for _, _, argv in harness.park_commands(live_ids, BUCKETS):
        out = redis_cli(*argv)
        updated += int(out) if out.isdigit() else 0
    return updated


# ---------------------------------------------------------------- main

harness.raise_on_signals()
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
    harness.ignore_signals()
    harness.stop_run(stop_event, loadgen, [gateway, *monitors.values()])
    # the brokers may have been left down by an interrupted outage: the mock is stopped anyway
    harness.stop_services(service_env, log)
    harness.remove_file(PIDS_FILE)


try:
    harness.require_tools("psql", "redis-cli", "redis-server", "stdbuf")
    harness.require_binaries(args.bin, ("heartbeat-ingest", "heartbeat-monitor", "heartbeat-loadgen"))
    lock = harness.lock_run_dir(RUN, "chaos.lock")
    if lock is None:
        raise HarnessError(f"another chaos run uses {RUN} (its services too): wait for it, or give --run-dir and ports")
    harness.kill_leftovers(PIDS_FILE, TAG, log, by="an earlier chaos run")
    log(f"{'short' if args.short else 'full'} run: {args.devices} devices every {args.interval} s for {args.duration:.0f} s, "
        f"{args.silent_fraction:.0%} silent at mid-run; OFFLINE_AFTER {args.offline_after} s, SCAN_INTERVAL {args.scan_interval} s; run dir {RUN}")
    # fresh state: services of an earlier run stopped, Redis's append-only file removed, schema dropped
    services("stop")
    shutil.rmtree(os.path.join(RUN, "redis"), ignore_errors=True)
    for line in services("start").splitlines():
        log(line)
    urls = harness.service_urls(service_env)
    psql("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    log(f"services: {urls['REDIS_URL']} (appendonly {redis_cli('CONFIG', 'GET', 'appendonly').split()[-1]}), {urls['POSTGRES_URL']}, Kafka {urls['KAFKA_BROKERS']}")

    common = {"REDIS_URL": urls["REDIS_URL"], "LOG_LEVEL": "info", "LOG_FORMAT": "text"}  # the log summary reads text lines
    monitor_env = dict(common, POSTGRES_URL=urls["POSTGRES_URL"], KAFKA_BROKERS=urls["KAFKA_BROKERS"], ADMIN_HOST="127.0.0.1",
                       ADMIN_TOKEN=ADMIN_TOKEN, OFFLINE_AFTER_SECONDS=str(args.offline_after), SCAN_INTERVAL_SECONDS=str(args.scan_interval),
                       LEADER_REDIS_TIMEOUT_SECONDS="1", RECONCILE_INTERVAL_SECONDS="5")
    for name in ("a", "b"):
        port = harness.free_port()
        monitors[name] = harness.Proc(f"monitor-{name}", [os.path.join(args.bin, "heartbeat-monitor")], dict(monitor_env, ADMIN_PORT=str(port)),
                                      os.path.join(RUN, f"monitor-{name}.log"), port, TAG, PIDS_FILE, RUN, starter="chaos")
    gw_port = harness.free_port()
    gateway = harness.Proc("gateway", [os.path.join(args.bin, "heartbeat-ingest")],
                           dict(common, HTTP_HOST="127.0.0.1", HTTP_PORT=str(gw_port), HEARTBEAT_MIN_INTERVAL_SECONDS="0"),
                           os.path.join(RUN, "gateway.log"), gw_port, TAG, PIDS_FILE, RUN, starter="chaos")
    for proc in (gateway, *monitors.values()):
        harness.remove_file(proc.log_path)
    # a first, so it takes the lock; b stands by and serves the loadgen's ops API calls
    monitors["a"].start({"MONITOR_INSTANCE_ID": "chaos-a.1"})
    if not wait_until(lambda: monitors["a"].readyz()[1].get("leader") is True, 60, poll=0.1):
        raise HarnessError(f"monitor-a not leading within 60 s; log {monitors['a'].log_path}:\n{monitors['a'].tail()}")
    monitors["b"].start({"MONITOR_INSTANCE_ID": "chaos-b.1"})
    gateway.start()
    for proc in (monitors["b"], gateway):
        if not wait_until(lambda: proc.readyz()[0] == 200, 60, poll=0.1):
            raise HarnessError(f"{proc.name} not ready within 60 s; log {proc.log_path}:\n{proc.tail()}")
    log(f"gateway :{gateway.port}, monitor-a :{monitors['a'].port} (leader), monitor-b :{monitors['b'].port} (standby; the loadgen's ops API)")
    watcher = harness.Watcher([gateway, *monitors.values()], list(monitors.values()), stop_event, log)
    watcher.start()

    loadgen, reader, devices_file, report_file = harness.start_load(
        args, os.path.join(args.bin, "heartbeat-loadgen"), [f"http://127.0.0.1:{gateway.port}"], f"http://127.0.0.1:{monitors['b'].port}",
        ADMIN_TOKEN, RUN, TAG, PIDS_FILE, log)
    load_t0 = reader.wait_started()
    load_end = load_t0 + args.duration
    window_end = build_schedule()
    mid = args.duration / 2
    bound = args.offline_after + args.scan_interval + args.slack
    log(f"load started; silent devices stop at t={mid:.0f}s, detection window t={mid:.0f}–{window_end:.1f}s "
        f"(audit bound OFFLINE_AFTER + SCAN_INTERVAL + slack = {bound:.1f} s); faults at: " + schedule.describe())

    # the faults, in turn
    for began, record in schedule.run(load_t0, loadgen, reader.path, log):
        record.update(t=round(began - load_t0, 1), start=began, end=time.time())
        faults.append(record)

    # the end of the load: park the live devices once their last heartbeats are in
    fleet, silent_ids, live_ids = harness.read_fleet(devices_file, args.silent_fraction)
    earliest_stale = load_end - args.interval * 1.1 + args.offline_after
    harness.park_at_end(load_end, lambda: park_live_devices(live_ids), earliest_stale - args.scan_interval, log)
    log(f"load ended: {len(live_ids)} live devices parked an hour ahead in the online sets (nothing more is declared offline)")

    harness.wait_loadgen(loadgen, reader, args.duration + 300)
    report, problems = harness.loadgen_report(loadgen.returncode, report_file, log)

    # our own audit from PostgreSQL and Kafka
    accepted = report.get("ok", reader.latest["ok"])

    def explain(fault):
        if fault["kind"] == "redis restart":
            return f" (Redis down {fault['down_s']} s; over {REDIS_OUTAGE_SAFE:.2f} s a beating device can look silent)"
        return ""
    pg_problems, fig = harness.pg_audit(psql, fleet, silent_ids, accepted, bound, load_t0 + args.duration / 2, faults, explain,
                                        whole_tables=True)
    problems += pg_problems
    kafka_problems, kafka_fig = harness.kafka_audit(urls["KAFKA_BROKERS"], fig.pop("outbox_ids"))
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
    lines = [
        f"chaos summary ({'short' if args.short else 'full'} run, {args.devices} devices, {args.duration:.0f} s, {len(fleet) - len(live_ids)} silent):",
        f"  faults: {len(rds)} Redis restarts, {len(pgs)} PostgreSQL restarts, {len(kfs)} Kafka outages, {len(kills)} leader kills",
        f"  heartbeats: sent {report.get('sent')}, accepted {accepted}, by status {report.get('by_status')}, transport errors {report.get('transport_errors')}; "
        f"latency p99 {report.get('latency_ms', {}).get('p99', 0):.1f} ms, max {report.get('latency_ms', {}).get('max', 0):.0f} ms",
        f"  leadership: {sum(1 for _, who in watcher.changes[1:] if who)} changes seen (leader terms {watcher.total('monitor_leader_terms_total')}), "
        f"longest without a leader {watcher.longest_leaderless():.2f} s, both reporting leader in {watcher.both_leading} polls",
        f"  leader kills: failover {', '.join(str(f['failover_s']) for f in kills)} s",
        f"  PostgreSQL restarts: down {', '.join(str(f['down_s']) for f in pgs)} s, lock back after {', '.join(str(f['lock_back_s']) for f in pgs)} s",
        f"  Redis restarts: down {', '.join(str(f['down_s']) for f in rds)} s, gateway ready after {', '.join(str(f['gateway_ready_s']) for f in rds)} s",
        f"  Kafka outages: down {', '.join(str(f['down_s']) for f in kfs)} s, backlog at recovery {', '.join(str(f['backlog_at_up']) for f in kfs)} rows, "
        f"drained {', '.join(str(f['drained_s']) for f in kfs)} s after; delivery errors {watcher.total('monitor_kafka_delivery_errors_total')}",
        f"  offline detection (silent devices, server time from last heartbeat to device.offline): "
        f"{fig.get('detection_min_s')}–{fig.get('detection_max_s')} s, bound {bound:.1f} s",
        f"  events: expected {fig.get('events_expected')} ({len(fleet)} online + {len(silent_ids)} offline), in PostgreSQL "
        f"{fig.get('events_online', 0) + fig.get('events_offline', 0)} ({fig.get('events_online')} online + {fig.get('events_offline')} offline), "
        f"outbox {fig.get('outbox_rows')} rows / {fig.get('outbox_unpublished')} unpublished, on Kafka "
        + (f"{fig.get('kafka_distinct')} distinct ({fig.get('kafka_messages')} messages, {fig.get('kafka_duplicates')} duplicates)"
           if "kafka_messages" in fig else fig.get("kafka", "?")),
        f"  heartbeat_history: raw {fig.get('history_raw')}, deduplicated {fig.get('history_dedup')} "
        f"(duplicates {fig.get('history_duplicates')}), accepted {accepted}",
        f"  monitors: storm guard trips {watcher.total('monitor_storm_guard_trips_total')}, apply errors {watcher.total('monitor_apply_errors_total')}, "
        f"registry re-seeds {watcher.total('monitor_registry_reseeds_total')} (one at the start), history rows reported shed {shed}, reconcile repairs {watcher.total('monitor_reconcile_repaired_total')}, "
        f"crashes {len(watcher.crashes)}",
        *harness.log_summary_lines((gateway, *monitors.values())),
    ]
    exit_code = harness.conclude(lines, warnings, problems,
                                 [*(p.log_path for p in (gateway, *monitors.values())), reader.path, os.path.join(RUN, "redis", "redis.log"),
                                  os.path.join(RUN, "pg", "pg.log"), os.path.join(RUN, "kafka", "kafka.log")], T_START)
except BaseException as error:
    exit_code = harness.failure(error, log, (gateway, *monitors.values()))
finally:
    cleanup()
sys.exit(exit_code)
