#!/usr/bin/env python3
"""make cluster-test: heartbeat-loadgen against two gateways and two monitors running on a real Redis
Cluster (REDIS_CLUSTER_NODES), while a primary is SIGKILLed and failed over, a bucket's slot is
migrated under load (paused half way) and redis-cli reshards other slots; then the loadgen's audit
and our own from PostgreSQL, Kafka and the probes' replies.

What it does:
1. Starts private PostgreSQL and the Kafka mock (scripts/services.sh start postgres kafka, in its
   own run dir: .run/cluster-test with PostgreSQL 5450, --short .run/cluster-test-short with 5451;
   the REDIS_PORT given to services.sh is never started) on a fresh database and, at the same time,
   a Redis Cluster of 3 primaries with one replica each (scripts/redis_cluster.py: ports 7311-7316,
   --short 7301-7306, cluster-node-timeout 1500 ms, cluster-require-full-coverage no, so a dead
   primary takes down only its own slots; --full-coverage for Redis's default). Then one leader and
   one standby monitor and two gateways (the executables hard-linked into <run dir>/bin first, so a
   rebuild during the run changes nothing), all with REDIS_CLUSTER_NODES = every node and REDIS_URL
   = the first node, and chaos.py's scaled-down durations (OFFLINE_AFTER_SECONDS 2,
   SCAN_INTERVAL_SECONDS 0.5, HEARTBEAT_MIN_INTERVAL_SECONDS 0, LEADER_REDIS_TIMEOUT_SECONDS 1,
   RECONCILE_INTERVAL_SECONDS 5, BUCKETS 16).
2. Registers one probe device per bucket (ids chosen so bucket b has probe b) through the standby's
   ops API; a thread per probe beats every --probe-interval s, alternating between the gateways, and
   records every reply: status, error code, Retry-After, server time. The loadgen does not report
   headers, so Retry-After is checked on the probes' 503s only (the loadgen's 503s are counted).
3. Runs heartbeat-loadgen through both gateways (--interval per device, --silent-fraction stops at
   mid-run) and, while it beats:
   - migrates the slot of a bucket (one owned by the primary with the most buckets) to the primary
     with the fewest, by hand (SETSLOT IMPORTING/MIGRATING, MIGRATE … KEYS in batches of
     --migrate-batch, SETSLOT NODE), pausing --migrate-pause s after the first batch: moved keys are
     answered ASK, scripts over moved and unmoved (or absent) keys TRYAGAIN. Redis refuses a
     multi-key script over a slot being migrated as long as one of its keys is absent, so some 503s
     of that bucket during the pause are Redis's doing: the pause is kept under what a live device
     can miss without looking silent (OFFLINE_AFTER - 1.1 × interval - SCAN_INTERVAL);
   - SIGKILLs the primary owning the most buckets, measures the failover (a former replica serves
     its slots and every survivor says cluster_state:ok, all slots served), and restarts the killed
     node --restart-after s later (it rejoins as a replica and syncs);
   - after the silent devices' detection window, `redis-cli --cluster reshard` of --reshard-slots
     slots from the primary with the most slots to the one with the fewest.
   The full run does each twice: the second migration and the second kill inside the silent devices'
   detection window (the audit's --slack is 6 s there, covering the failover, as the documented bound
   OFFLINE_AFTER + failover + one scan does), the second reshard later. A few seconds after each
   fault the loadgen's non-200 answers since it began and the probes' replies around it are logged.
4. When the load ends, the live devices and probes are parked an hour ahead in their buckets' online
   sets (ZADD XX on the primary of each bucket's slot, MOVED/ASK followed), as chaos.py does, so
   nothing more is declared offline while the loadgen audits.
5. Checks: the loadgen's audit (each silent device one device.offline in time, no live device
   offline, every accepted heartbeat in heartbeat_history); in PostgreSQL (harness.pg_audit, as
   chaos.py): history rows = accepted heartbeats (deduplicated; a shortfall is reported with its
   exact size and never tolerated: a SIGKILLed primary can lose writes it acknowledged before its
   replica got them), one device.online per device, one device.offline per silent device and none
   for a live one (false offlines attributed to the fault that began last before them), statuses,
   the outbox drained; with kcat, every outbox event on Kafka; the probes: only 200 and 503 answered,
   every 503 with a Retry-After of whole seconds ≥ 1, every accepted probe heartbeat in history (a
   missing one is listed with its server time relative to the kills); the loadgen's statuses only
   200 and 503; no process crashed. Figures: failover times, per fault the probes' 503s in the
   affected buckets (first to last, relative to the fault) and in the others (a primary's death or a
   migration should not touch other buckets: reported as a WARNING), the gateways'
   heartbeat_outcomes_total.

Exit status: 0 all passed, 1 an audit or check failed (or a process crashed), 2 the harness itself
failed (a service, the cluster or a process did not start; also when the executables do not know
REDIS_CLUSTER_NODES), 130 interrupted. Everything it starts is stopped at exit; logs stay in the run
directory (gateway-*.log, monitor-*.log, loadgen.log, probes.jsonl, cluster/<port>/redis.log,
pg/pg.log, kafka/kafka.log) and their paths are printed on failure.

usage: scripts/cluster_test.py [--short] [--bin DIR] [--devices N] [--duration S] ...
  --short: the version for `make test` (≤ 90 s): 100 devices for 45 s, each fault once.
"""
import argparse, calendar, http.client, json, os, sys, threading, time, uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import redis_cluster  # noqa: E402
from harness import HarnessError, stamp  # noqa: E402
from redis_cluster import bucket_slot  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ADMIN_TOKEN = "cluster-test-admin-token-0123456789"
BUCKETS = 16
BINARIES = ("heartbeat-ingest", "heartbeat-monitor", "heartbeat-loadgen")

parser = argparse.ArgumentParser(description=__doc__.split("\nusage:")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--short", action="store_true", help="short run for make test (100 devices, 45 s, each fault once)")
parser.add_argument("--bin", default=os.path.join(ROOT, ".build", "debug"), help="directory of heartbeat-ingest, -monitor, -loadgen (default .build/debug)")
parser.add_argument("--run-dir", help="services, cluster and logs (default .run/cluster-test, --short .run/cluster-test-short)")
parser.add_argument("--cluster-port", type=int, help="first cluster node's port; 6 nodes from there, bus ports + 10000 (default 7311, --short 7301)")
parser.add_argument("--pg-port", type=int, help="private PostgreSQL (default 5450, --short 5451)")
parser.add_argument("--redis-port", type=int, help="REDIS_PORT given to services.sh, never started (default 6404, --short 6405)")
harness.add_load_arguments(parser, "load run length in seconds (default 170, --short 45)")
parser.add_argument("--leader-redis-timeout", type=float, default=1.0, help="LEADER_REDIS_TIMEOUT_SECONDS (default 1, as chaos.py)")
parser.add_argument("--slack", type=float, help="audit slack beyond OFFLINE_AFTER + SCAN_INTERVAL (default 2; full run 6: it kills a primary "
                    "inside the detection window, and the documented bound adds the failover time)")
parser.add_argument("--gateways", type=int, default=2, help="gateways (default 2)")
parser.add_argument("--node-timeout", type=int, default=1500, help="cluster-node-timeout in ms (default 1500)")
parser.add_argument("--full-coverage", action="store_true", help="cluster-require-full-coverage yes: every node refuses commands while a primary is down")
parser.add_argument("--migrate-pause", type=float, default=0.5, help="seconds a slot migration stays half done (default 0.5)")
parser.add_argument("--migrate-batch", type=int, default=3, help="keys per MIGRATE of the manual slot migration (default 3)")
parser.add_argument("--reshard-slots", type=int, default=500, help="slots moved by each redis-cli --cluster reshard (default 500)")
parser.add_argument("--restart-after", type=float, default=3.0, help="seconds after the failover before the killed node is started again (default 3)")
parser.add_argument("--probe-interval", type=float, default=0.25, help="seconds between a probe device's heartbeats (default 0.25)")
parser.add_argument("--verbose", action="store_true", help="echo every loadgen progress line (default: every 5 s)")
parser.add_argument("--no-binary-check", action="store_true",
                    help="start even when the executables do not mention REDIS_CLUSTER_NODES (to work on this script with older builds)")
args = parser.parse_args()
args.devices = args.devices or (100 if args.short else 300)
args.run_dir = args.run_dir or os.path.join(ROOT, ".run", "cluster-test-short" if args.short else "cluster-test")
args.cluster_port = args.cluster_port or (7301 if args.short else 7311)
args.pg_port = args.pg_port or (5451 if args.short else 5450)
args.redis_port = args.redis_port or (6405 if args.short else 6404)
args.duration = args.duration or (45.0 if args.short else 170.0)
args.slack = args.slack if args.slack is not None else (2.0 if args.short else 6.0)
if args.duration < (40 if args.short else 150):
    parser.error(f"--duration must be at least {40 if args.short else 150} s to fit the faults")
if args.gateways < 1:
    parser.error("--gateways must be at least 1")

RUN = os.path.abspath(args.run_dir)
TAG = ("CLUSTER_TEST_RUN_DIR", RUN)
PIDS_FILE = os.path.join(RUN, "cluster-test.pids")
# how long a live device's heartbeats may fail without it looking silent to a scan
OUTAGE_SAFE = args.offline_after - 1.1 * args.interval - args.scan_interval
T_START = time.time()
stop_event = threading.Event()
probe_stop = threading.Event()
log = harness.logger("cluster-test", T_START)


def wait_until(predicate, timeout, poll=0.05):
    return harness.wait_until(predicate, timeout, poll)


# ---------------------------------------------------------------- services

service_env = harness.service_env(RUN, args.redis_port, args.pg_port)


def services(*argv, timeout=120):
    return harness.run_services(service_env, *argv, timeout=timeout).stdout


def ops(method, path, body=None):
    return harness.http(f"http://127.0.0.1:{monitors['b'].port}{path}", method=method, body=body, timeout=5,
                        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})


# ---------------------------------------------------------------- probes

class Probe(threading.Thread):
    """One device of one bucket beating every --probe-interval s, alternating between the gateways;
    every reply recorded (the loadgen does not report Retry-After)."""

    def __init__(self, bucket, device, token):
        super().__init__(daemon=True)
        self.bucket, self.device, self.token = bucket, device, token
        self.conns = {}

    def beat(self, port):
        body = json.dumps({"device_id": self.device, "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"})
        conn = self.conns.get(port) or http.client.HTTPConnection("127.0.0.1", port, timeout=3)
        self.conns[port] = conn
        try:
            conn.request("POST", f"/api/v1/devices/{self.device}/heartbeat", body=body,
                         headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
            reply = conn.getresponse()
            data = reply.read().decode(errors="replace")
            retry_after = reply.getheader("Retry-After")
            if reply.getheader("Connection", "").lower() == "close":
                conn.close()
                self.conns.pop(port, None)
        except (OSError, http.client.HTTPException) as error:
            conn.close()
            self.conns.pop(port, None)
            return None, None, None, type(error).__name__
        try:
            parsed = json.loads(data)
        except ValueError:
            parsed = {}
        return reply.status, retry_after, parsed.get("server_time"), parsed.get("error")

    def run(self):
        i = 0
        next_at = time.time()
        while not probe_stop.is_set():
            port = gateways[i % len(gateways)].port
            i += 1
            t0 = time.time()
            status, retry_after, server_time, code = self.beat(port)
            with probe_lock:
                probe_replies.append({"t": t0, "rtt": round(time.time() - t0, 4), "bucket": self.bucket, "gateway": port,
                                      "status": status, "retry_after": retry_after, "server_time": server_time, "code": code})
            next_at += args.probe_interval
            probe_stop.wait(max(0, next_at - time.time()))
        for conn in self.conns.values():
            conn.close()


probe_lock = threading.Lock()
probe_replies = []
warnings_early = []
probes = {}  # bucket -> Probe


def register_probes():
    for b in range(BUCKETS):
        while True:
            device = str(uuid.uuid4())
            if harness.device_bucket(device, BUCKETS) == b:
                break
        status, text = ops("POST", "/api/v1/devices", {"id": device, "name": f"cluster-probe-{b}"})
        if status != 201:
            raise HarnessError(f"registering probe device {b} failed: {status} {text[:300]}")
        probes[b] = Probe(b, device, json.loads(text)["token"])
    for p in probes.values():
        p.start()


def probe_window(start, end, buckets):
    """The probes' replies between start and end: (non-200 in `buckets`, non-200 elsewhere, all in `buckets`)."""
    with probe_lock:
        replies = [r for r in probe_replies if start <= r["t"] <= end]
    inside = [r for r in replies if r["bucket"] in buckets]
    return [r for r in inside if r["status"] != 200], [r for r in replies if r["bucket"] not in buckets and r["status"] != 200], inside


def describe_errors(replies):
    counts = {}
    for r in replies:
        key = f"{r['status'] or 'no reply'}" + (f" {r['code']}" if r["code"] else "")
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{k}×{v}" for k, v in sorted(counts.items())) or "none"


# ---------------------------------------------------------------- faults

faults = []
schedule = harness.Schedule()


started = []  # every fault's record from the moment it begins (with its buckets), for after_fault's overlaps


def begin(record, settle=4.0):
    record["settle"] = settle
    started.append(record)
    return record


def after_fault(record, before):
    """Logs, `settle` s after a fault ended, the loadgen's non-200 answers and the probes' replies around it."""
    def report():
        lo, hi = record["start"] - 0.5, record["end"] + settle
        # another fault inside this one's window: its buckets are not "elsewhere", its 503s are in the loadgen's count
        others = [f for f in started if f is not record and f["start"] <= hi and f.get("end", time.time()) + f["settle"] >= lo]
        other_buckets = {b for f in others for b in f["buckets"]}
        record["overlaps"] = ", ".join(f"{f['kind']} at {stamp(f['start'])} (buckets {f['buckets']})" for f in others)
        bad, elsewhere, inside = probe_window(lo, hi, set(record["buckets"]))
        elsewhere = [r for r in elsewhere if r["bucket"] not in other_buckets]
        record["probe_bad"], record["probe_bad_elsewhere"], record["probe_total"] = len(bad), len(elsewhere), len(inside)
        record["probe_errors"] = describe_errors(bad)
        record["probe_errors_elsewhere"] = describe_errors(elsewhere)
        if bad:
            record["probe_bad_span"] = (round(bad[0]["t"] - record["start"], 2), round(bad[-1]["t"] - record["start"], 2))
        record["loadgen_errors"] = harness.errors_delta(before, reader.latest)
        log(f"  {record['kind']} (t={record['t']}s): loadgen answers other than 200 since it began: {record['loadgen_errors']}; "
            f"probes of buckets {record['buckets']}: {len(bad)}/{len(inside)} not 200 ({record['probe_errors']})"
            + (f", from +{record['probe_bad_span'][0]} s to +{record['probe_bad_span'][1]} s" if bad else "")
            + f"; other buckets: {record['probe_errors_elsewhere']}" + (f" (overlaps the {record['overlaps']})" if others else ""))
    settle = record["settle"]
    timer = threading.Timer(max(0, record["end"] + settle - time.time()), report)
    timer.daemon = True
    timer.start()
    reports.append(timer)


reports = []


def fault_migrate():
    view = cluster.nodes()
    prims = cluster.primaries_now(view)
    by_buckets = sorted(prims, key=lambda n: (-len(cluster.buckets_of(n, view=view)), n.port))
    src, dst = by_buckets[0], by_buckets[-1]
    moved_before = {f["bucket"] for f in faults if f["kind"] == "slot migration"}
    bucket = next((b for b in cluster.buckets_of(src, view=view) if b not in moved_before), cluster.buckets_of(src, view=view)[0])
    slot = bucket_slot(bucket)
    before = reader.latest
    seen = {}
    record = begin({"kind": "slot migration", "bucket": bucket, "buckets": [bucket], "slot": slot, "from": src.port, "to": dst.port,
                    "start": time.time()})

    def half_way(fig):
        # what the source answers now for a key of the bucket already on the target (ASK)
        for key in cluster.call(dst.port, "CLUSTER", "GETKEYSINSLOT", slot, 1):
            try:
                cluster.call(src.port, "TYPE", key)
            except redis_cluster.RedisError as error:
                seen["moved"] = f"{key}: {error}"
        log(f"  migration of slot {slot} (bucket {bucket}) half done ({fig['keys']} keys moved), pausing {args.migrate_pause} s; "
            f"source on a moved key: {seen.get('moved', '?')}")
    try:
        fig = cluster.migrate_slot(slot, dst.id, batch=args.migrate_batch, pause=args.migrate_pause, on_paused=half_way)
    except redis_cluster.ClusterError as error:
        raise HarnessError(str(error))
    keys_on_dst = cluster.call(dst.port, "CLUSTER", "COUNTKEYSINSLOT", slot)
    record.update(keys=fig["keys"], batches=fig["batches"], seconds=fig["seconds"], paused_s=fig["paused_s"])
    log(f"FAULT slot migration: bucket {bucket} (slot {slot}) {src.port} -> {dst.port}: {fig['keys']} keys in {fig['batches']} MIGRATE batches "
        f"of {args.migrate_batch}, {fig['seconds']} s with a {fig['paused_s']} s pause half way; {keys_on_dst} keys on {dst.port} now")
    record["end"] = time.time()
    after_fault(record, before)
    return record


killed = []  # (port, node id, time of the SIGKILL)


def fault_kill():
    view = cluster.nodes()
    victim = max(cluster.primaries_now(view), key=lambda n: (len(cluster.buckets_of(n, view=view)), -n.port))
    buckets = cluster.buckets_of(victim, view=view)
    replicas = [n.port for n in view if n.master_id == victim.id]
    before = reader.latest
    t0 = time.time()
    record = begin({"kind": "primary kill", "victim": victim.port, "buckets": buckets, "slots": victim.slot_count, "replicas": replicas,
                    "start": t0}, settle=8.0)
    cluster.kill(victim)
    took = cluster.wait_failover(victim.id, timeout=30)
    promoted = cluster.primary_of_slot(victim.slots[0][0]) if took is not None else None
    record.update(failover_s=round(took, 2) if took is not None else None, promoted=promoted.port if promoted else None)
    log(f"FAULT primary kill: SIGKILL {victim.port} ({victim.id[:8]}, {victim.slot_count} slots, buckets {buckets}) at {stamp(t0)}; "
        + (f"replica {record['promoted']} promoted, cluster_state:ok on the survivors after {record['failover_s']} s" if took is not None
           else "NO FAILOVER within 30 s"))
    if took is None:
        raise HarnessError(f"no replica of {victim.port} took over within 30 s: {cluster.settled()}")
    killed.append((victim.port, victim.id, t0))
    record["end"] = time.time()
    after_fault(record, before)
    schedule.at(time.time() - load_t0 + args.restart_after, f"restart {victim.port}", lambda: restart_node(victim.port, record))
    return record


def restart_node(port, kill_record):
    t0 = time.time()
    try:
        cluster.restart(port, wait=True, timeout=30)
    except redis_cluster.ClusterError as error:
        raise HarnessError(f"node {port} did not rejoin: {error}")
    n = cluster.node(port)
    kill_record["rejoined_s"] = round(time.time() - t0, 2)
    log(f"  restarted {port}: {n.role} of {cluster.node(n.master_id).port if n.master_id else '-'}, synced and cluster settled after "
        f"{kill_record['rejoined_s']} s")
    return None


def fault_reshard():
    if not wait_until(lambda: cluster.settled() is None, 20, poll=0.2):
        log(f"  (cluster not settled before the reshard: {cluster.settled()})")
    view = cluster.nodes()
    prims = cluster.primaries_now(view)
    src = max(prims, key=lambda n: (n.slot_count, -n.port))
    dst = min(prims, key=lambda n: (n.slot_count, n.port))
    before = reader.latest
    t0 = time.time()
    # the buckets are known only afterwards: those of every slot the source could give up
    record = begin({"kind": "reshard", "from": src.port, "to": dst.port, "buckets": cluster.buckets_of(src, view=view), "start": t0})
    try:
        result = cluster.reshard(args.reshard_slots, dst.id, from_node_id=src.id)
    except redis_cluster.ClusterError as error:
        raise HarnessError(str(error))
    moved = sorted(result["moved"])
    buckets = [b for b in range(BUCKETS) if bucket_slot(b) in result["moved"]]
    record.update(slots=len(moved), buckets=buckets, seconds=result["seconds"])
    log(f"FAULT redis-cli --cluster reshard: {len(moved)} slots ({moved[0] if moved else '-'}–{moved[-1] if moved else '-'}) "
        f"{src.port} -> {dst.port} in {result['seconds']} s; buckets among them: {buckets or 'none'}")
    record["end"] = time.time()
    after_fault(record, before)
    return record


def build_schedule():
    d, mid = args.duration, args.duration / 2
    window_end = mid + args.offline_after + args.scan_interval + args.slack
    if args.short:
        schedule.at(5, "slot migration", fault_migrate)
        schedule.at(11, "primary kill", fault_kill)
        schedule.at(window_end + 2, "reshard", fault_reshard)
    else:
        schedule.at(10, "slot migration", fault_migrate)
        schedule.at(25, "primary kill", fault_kill)
        schedule.at(50, "reshard", fault_reshard)
        # inside the detection window: the scanner declares while a slot is half moved, then while a
        # primary is down (its silent devices are declared after the failover: --slack covers it)
        schedule.at(mid + 0.3, "slot migration (window)", fault_migrate)
        schedule.at(mid + 1.2, "primary kill (window)", fault_kill)
        schedule.at(d - 30, "reshard", fault_reshard)
    return window_end


# ---------------------------------------------------------------- end of the load and checks

def park(device_ids):
    """Scores the devices an hour ahead in their buckets' online sets (ZADD XX: never re-adds one),
    on the primary of each bucket's slot (MOVED/ASK followed)."""
    updated = 0
    for b, key, argv in harness.park_commands(device_ids, BUCKETS):
        try:
            updated += int(cluster.call_key(key, *argv))
        except (redis_cluster.RedisError, redis_cluster.ClusterError) as error:
            log(f"WARNING: parking bucket {b} failed: {error}")
    return updated


def probe_checks():
    """Problems and figures from the probes' replies and their rows in heartbeat_history."""
    problems, fig = [], {}
    with probe_lock:
        replies = list(probe_replies)
    with open(os.path.join(RUN, "probes.jsonl"), "w") as f:
        for r in replies:
            f.write(json.dumps(r) + "\n")
    by_status = {}
    for r in replies:
        by_status[str(r["status"] or "no reply")] = by_status.get(str(r["status"] or "no reply"), 0) + 1
    fig["probe_replies"] = len(replies)
    fig["probe_by_status"] = dict(sorted(by_status.items()))
    unexpected = [r for r in replies if r["status"] not in (200, 503, None)]
    if unexpected:
        problems.append(f"probes got {len(unexpected)} answers other than 200/503: {describe_errors(unexpected)}; first at "
                        f"{stamp(unexpected[0]['t'])} (bucket {unexpected[0]['bucket']}, gateway :{unexpected[0]['gateway']})")
    no_reply = [r for r in replies if r["status"] is None]
    if no_reply:
        problems.append(f"probes got no reply {len(no_reply)} times ({describe_errors(no_reply)}; timeout 3 s), first at {stamp(no_reply[0]['t'])} "
                        f"(bucket {no_reply[0]['bucket']})")
    u = [r for r in replies if r["status"] == 503]
    fig["probe_503"] = len(u)
    fig["probe_503_codes"] = describe_errors(u)
    ra = {}
    bad_ra = []
    for r in u:
        ra[r["retry_after"]] = ra.get(r["retry_after"], 0) + 1
        if r["retry_after"] is None or not r["retry_after"].isdigit() or int(r["retry_after"]) < 1:
            bad_ra.append(r)
    fig["probe_retry_after"] = {str(k): v for k, v in sorted(ra.items(), key=lambda kv: str(kv[0]))}
    if bad_ra:
        problems.append(f"{len(bad_ra)} of the probes' {len(u)} 503 answers without a valid Retry-After (e.g. {bad_ra[0]})")
    # every accepted probe heartbeat in heartbeat_history
    ok = [r for r in replies if r["status"] == 200]
    ids = {p.device: b for b, p in probes.items()}
    rows = psql("SELECT device_id, (extract(epoch FROM received_at) * 1000)::bigint, count(*) FROM heartbeat_history WHERE device_id IN ("
                + ",".join(f"'{d}'" for d in ids) + ") GROUP BY 1, 2")
    stored = {}
    for device, ms, n in rows:
        stored.setdefault(ids[device], {})[int(ms)] = int(n)
    fig["probe_accepted"] = len(ok)
    fig["probe_history"] = sum(len(v) for v in stored.values())
    missing = []
    for r in ok:  # matched on the reply's server_time (ms), which the history row keeps as received_at
        try:
            ms = calendar.timegm(time.strptime(r["server_time"][:19], "%Y-%m-%dT%H:%M:%S")) * 1000 + int(r["server_time"][20:23])
        except (TypeError, ValueError):
            continue
        if not any(abs(ms - s) <= 1 for s in stored.get(r["bucket"], {})):
            missing.append((r, ms))
    fig["probe_history_missing"] = max(0, len(ok) - fig["probe_history"])
    if missing and fig["probe_history"] >= len(ok):
        warnings_early.append(f"{len(missing)} accepted probe heartbeats not matched by server_time to a history row although the counts "
                              f"agree ({fig['probe_history']} rows, {len(ok)} accepted): received_at and server_time differ?")
    elif fig["probe_history_missing"]:
        def near_kill(r):
            k = max((k for k in killed if k[2] <= r["t"] + 5), key=lambda k: k[2], default=None)
            return f"{r['t'] - k[2]:+.2f} s from the kill of {k[0]}" if k else "no kill before"
        problems.append(f"{fig['probe_history_missing']} accepted probe heartbeats missing from heartbeat_history, e.g. "
                        + "; ".join(f"bucket {r['bucket']} server_time {r['server_time']} ({near_kill(r)})" for r, _ in missing[:6]))
    if fig["probe_history"] > len(ok) + len(no_reply):
        problems.append(f"{fig['probe_history']} probe rows in heartbeat_history, more than the {len(ok)} accepted + {len(no_reply)} unanswered")
    return problems, fig


def gateway_outcomes():
    totals = {}
    for g in gateways:
        status, text = harness.http(f"http://127.0.0.1:{g.port}/metrics", timeout=2)
        if status != 200:
            continue
        for line in text.splitlines():
            if line.startswith("heartbeat_outcomes_total{") or line.startswith("heartbeat_redis_errors_total"):
                name, value = line.rsplit(" ", 1)
                name = name.replace("heartbeat_outcomes_total", "").replace('{outcome="', "").replace('"}', "")
                totals[name] = totals.get(name, 0) + int(float(value))
    return {k: v for k, v in sorted(totals.items()) if v}


def check_binaries():
    """The executables must know REDIS_CLUSTER_NODES (else they would all talk to one node)."""
    for name in ("heartbeat-ingest", "heartbeat-monitor"):
        path = os.path.join(args.bin, name)
        with open(path, "rb") as f:
            if b"REDIS_CLUSTER_NODES" not in f.read():
                raise HarnessError(f"{path} does not mention REDIS_CLUSTER_NODES: built before Redis Cluster support (swift build)")


# ---------------------------------------------------------------- main

harness.raise_on_signals()
urls = {}
psql = None
gateways = []
monitors = {}
watcher = None
reader = None
loadgen = None
load_t0 = None
cluster = None
exit_code = 2
lock = None


def cleanup():
    if lock is None:
        return
    harness.ignore_signals()
    probe_stop.set()
    for timer in reports:
        timer.cancel()
    harness.stop_run(stop_event, loadgen, [*gateways, *monitors.values()])
    if cluster is not None:
        try:
            stopped = cluster.stop()
            log(f"cluster: stopped {len(stopped)} nodes")
        except Exception as error:
            log(f"cluster stop failed: {error!r}")
    harness.stop_services(service_env, log, "postgres", "kafka")
    harness.remove_file(PIDS_FILE)


try:
    harness.require_tools("psql", "redis-cli", "redis-server", "stdbuf")
    harness.require_binaries(args.bin, BINARIES)
    lock = harness.lock_run_dir(RUN, "cluster-test.lock")
    if lock is None:
        raise HarnessError(f"another cluster test uses {RUN}: wait for it, or give --run-dir and ports")
    harness.kill_leftovers(PIDS_FILE, TAG, log)
    cluster = redis_cluster.RedisCluster(os.path.join(RUN, "cluster"), args.cluster_port, primaries=3, replicas=1,
                                         node_timeout_ms=args.node_timeout, require_full_coverage=args.full_coverage,
                                         log=lambda m: log(f"cluster: {m}"))
    cluster.lock()
    log(f"{'short' if args.short else 'full'} run: {args.devices} devices every {args.interval} s for {args.duration:.0f} s, "
        f"{args.silent_fraction:.0%} silent at mid-run; OFFLINE_AFTER {args.offline_after} s, SCAN_INTERVAL {args.scan_interval} s; run dir {RUN}")
    if not args.no_binary_check:
        check_binaries()
    bin_dir = harness.link_binaries(args.bin, BINARIES, os.path.join(RUN, "bin"))
    # fresh state: what an earlier run left stopped; the cluster built while PostgreSQL and Kafka start
    services("stop", "postgres", "kafka")
    cluster.stop()
    cluster_result = {}

    def start_cluster():
        try:
            cluster_result["seeds"] = cluster.start()
        except BaseException as error:  # reported by the main thread
            cluster_result["error"] = error
    starter = threading.Thread(target=start_cluster, daemon=True)
    starter.start()
    for line in services("start", "postgres", "kafka").splitlines():
        log(line)
    starter.join(timeout=90)
    if "seeds" not in cluster_result:
        raise HarnessError(f"the Redis Cluster did not start: {cluster_result.get('error', 'timeout')}")
    seeds = cluster_result["seeds"]
    urls = harness.service_urls(service_env, "postgres", "kafka", keys=("POSTGRES_URL", "KAFKA_BROKERS"))
    psql = harness.psql_runner(urls["POSTGRES_URL"])
    psql("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    view = cluster.nodes()
    log(f"services: {urls['POSTGRES_URL']}, Kafka {urls['KAFKA_BROKERS']}; cluster {seeds}: "
        + "; ".join(f"{n.port} {n.ranges()} buckets {cluster.buckets_of(n, view=view)}" for n in cluster.primaries_now(view)))

    common = {"REDIS_URL": f"redis://127.0.0.1:{args.cluster_port}", "REDIS_CLUSTER_NODES": seeds, "BUCKETS": str(BUCKETS),
              "LOG_LEVEL": "info", "LOG_FORMAT": "text"}
    monitor_env = dict(common, POSTGRES_URL=urls["POSTGRES_URL"], KAFKA_BROKERS=urls["KAFKA_BROKERS"], ADMIN_HOST="127.0.0.1",
                       ADMIN_TOKEN=ADMIN_TOKEN, OFFLINE_AFTER_SECONDS=str(args.offline_after), SCAN_INTERVAL_SECONDS=str(args.scan_interval),
                       LEADER_REDIS_TIMEOUT_SECONDS=str(args.leader_redis_timeout), RECONCILE_INTERVAL_SECONDS="5")
    for name in ("a", "b"):
        port = harness.free_port()
        monitors[name] = harness.Proc(f"monitor-{name}", [os.path.join(bin_dir, "heartbeat-monitor")], dict(monitor_env, ADMIN_PORT=str(port)),
                                      os.path.join(RUN, f"monitor-{name}.log"), port, TAG, PIDS_FILE, RUN)
    for i in range(args.gateways):
        port = harness.free_port()
        gateways.append(harness.Proc(f"gateway-{i + 1}", [os.path.join(bin_dir, "heartbeat-ingest")],
                                     dict(common, HTTP_HOST="127.0.0.1", HTTP_PORT=str(port), HEARTBEAT_MIN_INTERVAL_SECONDS="0"),
                                     os.path.join(RUN, f"gateway-{i + 1}.log"), port, TAG, PIDS_FILE, RUN))
    for proc in (*gateways, *monitors.values()):
        harness.remove_file(proc.log_path)
    monitors["a"].start({"MONITOR_INSTANCE_ID": "cluster-a.1"})
    if not wait_until(lambda: monitors["a"].readyz()[1].get("leader") is True, 60, poll=0.1):
        raise HarnessError(f"monitor-a not leading within 60 s; log {monitors['a'].log_path}:\n{monitors['a'].tail()}")
    monitors["b"].start({"MONITOR_INSTANCE_ID": "cluster-b.1"})
    for g in gateways:
        g.start()
    for proc in (monitors["b"], *gateways):
        if not wait_until(lambda: proc.readyz()[0] == 200, 60, poll=0.1):
            raise HarnessError(f"{proc.name} not ready within 60 s; log {proc.log_path}:\n{proc.tail()}")
    log(f"gateways {', '.join(f':{g.port}' for g in gateways)}, monitor-a :{monitors['a'].port} (leader), "
        f"monitor-b :{monitors['b'].port} (standby; the loadgen's ops API)")
    watcher = harness.Watcher([*gateways, *monitors.values()], list(monitors.values()), stop_event, log)
    watcher.start()
    register_probes()
    log(f"probes: one device per bucket, every {args.probe_interval} s, alternating gateways")

    loadgen, reader, devices_file, report_file = harness.start_load(
        args, os.path.join(bin_dir, "heartbeat-loadgen"), [f"http://127.0.0.1:{g.port}" for g in gateways],
        f"http://127.0.0.1:{monitors['b'].port}", ADMIN_TOKEN, RUN, TAG, PIDS_FILE, log)
    load_t0 = reader.wait_started()
    load_end = load_t0 + args.duration
    window_end = build_schedule()
    mid = args.duration / 2
    bound = args.offline_after + args.scan_interval + args.slack
    log(f"load started; silent devices stop at t={mid:.0f}s, detection window t={mid:.0f}–{window_end:.1f}s "
        f"(audit bound {bound:.1f} s); faults at: " + schedule.describe())
    if args.migrate_pause > OUTAGE_SAFE:
        log(f"WARNING: --migrate-pause {args.migrate_pause} s is over {OUTAGE_SAFE:.2f} s: a live device of the migrated bucket can look silent")

    for _, record in schedule.run(load_t0, loadgen, reader.path, log):
        record["t"] = round(record["start"] - load_t0, 1)
        faults.append(record)

    fleet, silent_ids, live_ids = harness.read_fleet(devices_file, args.silent_fraction)
    earliest_stale = load_end - args.interval * 1.1 + args.offline_after
    time.sleep(max(0, load_end - time.time()))
    probe_stop.set()
    harness.park_at_end(load_end, lambda: park(live_ids + [p.device for p in probes.values()]), earliest_stale - args.scan_interval, log)
    log(f"load ended: {len(live_ids)} live devices and {len(probes)} probes parked an hour ahead in the online sets")

    harness.wait_loadgen(loadgen, reader, args.duration + 300)
    for timer in reports:
        timer.join(timeout=10)
    report, problems = harness.loadgen_report(loadgen.returncode, report_file, log)

    accepted = report.get("ok", reader.latest["ok"])
    warnings = warnings_early
    by_status = report.get("by_status", {})
    other = {k: v for k, v in by_status.items() if k not in ("200", "503")}
    if other:
        problems.append(f"the loadgen got answers other than 200 and 503: {other}")

    def explain(fault):
        if fault["kind"] == "primary kill":
            return f" (SIGKILL of {fault['victim']}, buckets {fault['buckets']}, failover {fault['failover_s']} s)"
        if fault["kind"] == "slot migration":
            return f" (bucket {fault['bucket']}, paused {fault['paused_s']} s)"
        return f" (buckets {fault['buckets']})"
    pg_problems, fig = harness.pg_audit(psql, fleet, silent_ids, accepted, bound, load_t0 + args.duration / 2, faults, explain)
    problems += pg_problems
    kafka_problems, kafka_fig = harness.kafka_audit(urls["KAFKA_BROKERS"], fig.pop("outbox_ids"))
    problems += kafka_problems
    fig.update(kafka_fig)
    probe_problems, probe_fig = probe_checks()
    problems += probe_problems
    fig.update(probe_fig)
    for t, name, code in watcher.crashes:
        problems.append(f"{name} crashed (exit {code}) at {stamp(t)}")
    if fig.get("history_short_by"):
        warnings.append(f"heartbeat_history is SHORT by exactly {fig['history_short_by']} accepted heartbeats of the fleet "
                        f"({len(killed)} primaries SIGKILLed: asynchronous replication can lose acknowledged writes; "
                        f"probe heartbeats missing: {fig.get('probe_history_missing')})")
    for f in faults:
        if f.get("probe_bad_elsewhere"):
            warnings.append(f"{f['kind']} at t={f['t']}s: probes of buckets it did not touch got {f['probe_errors_elsewhere']}")
        if f["kind"] == "primary kill" and f.get("probe_bad_span") and f["failover_s"] and f["probe_bad_span"][1] > f["failover_s"] + 2:
            warnings.append(f"primary kill at t={f['t']}s: its buckets' probes got non-200 until +{f['probe_bad_span'][1]} s, "
                            f"{f['probe_bad_span'][1] - f['failover_s']:.1f} s after the failover ({f['failover_s']} s)")
    shed = watcher.total("monitor_history_stream_overflow_total")
    outcomes = gateway_outcomes()
    stop_event.set()

    kills = [f for f in faults if f["kind"] == "primary kill"]
    migs = [f for f in faults if f["kind"] == "slot migration"]
    resh = [f for f in faults if f["kind"] == "reshard"]
    lines = [
        f"cluster test summary ({'short' if args.short else 'full'} run, {args.devices} devices, {args.duration:.0f} s, {len(silent_ids)} silent, "
        f"{len(gateways)} gateways, cluster {args.cluster_port}-{args.cluster_port + 5}):",
        "  primary kills: " + "; ".join(f"{k['victim']} (buckets {k['buckets']}) -> {k['promoted']} in {k['failover_s']} s, rejoined after "
                                        f"{k.get('rejoined_s')} s; probes of its buckets {k.get('probe_bad')}/{k.get('probe_total')} not 200 "
                                        f"({k.get('probe_errors')}), span {k.get('probe_bad_span')} s; loadgen {k.get('loadgen_errors')}" for k in kills),
        "  slot migrations: " + "; ".join(f"bucket {m['bucket']} {m['from']}->{m['to']} {m['keys']} keys in {m['seconds']} s (pause {m['paused_s']} s); "
                                          f"probes {m.get('probe_bad')}/{m.get('probe_total')} not 200 ({m.get('probe_errors')}); loadgen {m.get('loadgen_errors')}" for m in migs),
        "  reshards: " + "; ".join(f"{r['slots']} slots {r['from']}->{r['to']} in {r['seconds']} s, buckets {r['buckets']}; "
                                   f"probes {r.get('probe_bad')}/{r.get('probe_total')} not 200; loadgen {r.get('loadgen_errors')}" for r in resh),
        f"  heartbeats: sent {report.get('sent')}, accepted {accepted}, by status {by_status}, transport errors {report.get('transport_errors')}; "
        f"latency p99 {report.get('latency_ms', {}).get('p99', 0):.1f} ms, max {report.get('latency_ms', {}).get('max', 0):.0f} ms",
        f"  probes: {fig.get('probe_replies')} replies {fig.get('probe_by_status')}; 503s {fig.get('probe_503')} ({fig.get('probe_503_codes')}), "
        f"Retry-After {fig.get('probe_retry_after')}; history {fig.get('probe_history')} rows for {fig.get('probe_accepted')} accepted, "
        f"{fig.get('probe_history_missing')} missing",
        f"  gateways' heartbeat_outcomes_total: {outcomes}",
        f"  leadership: {sum(1 for _, who in watcher.changes[1:] if who)} changes (leader terms {watcher.total('monitor_leader_terms_total')}), "
        f"longest without a leader {watcher.longest_leaderless():.2f} s, both leading in {watcher.both_leading} polls",
        f"  offline detection (silent devices): {fig.get('detection_min_s')}–{fig.get('detection_max_s')} s, bound {bound:.1f} s; "
        f"false offlines {fig.get('false_offline')}",
        f"  events: expected {fig.get('events_expected')}, in PostgreSQL {fig.get('events_online', 0) + fig.get('events_offline', 0)} "
        f"({fig.get('events_online')} online + {fig.get('events_offline')} offline), outbox {fig.get('outbox_rows')} rows / "
        f"{fig.get('outbox_unpublished')} unpublished, on Kafka "
        + (f"{fig.get('kafka_distinct')} distinct ({fig.get('kafka_duplicates')} duplicates)" if "kafka_messages" in fig else fig.get("kafka", "?")),
        f"  heartbeat_history (fleet): raw {fig.get('history_raw')}, deduplicated {fig.get('history_dedup')} (duplicates "
        f"{fig.get('history_duplicates')}), accepted {accepted}, short by {fig.get('history_short_by')}",
        f"  monitors: storm guard trips {watcher.total('monitor_storm_guard_trips_total')}, apply errors {watcher.total('monitor_apply_errors_total')}, "
        f"re-seeds {watcher.total('monitor_registry_reseeds_total')}, reconcile repairs {watcher.total('monitor_reconcile_repaired_total')}, "
        f"history rows reported shed {shed}, crashes {len(watcher.crashes)}",
        *harness.log_summary_lines((*gateways, *monitors.values())),
    ]
    exit_code = harness.conclude(lines, warnings, problems,
                                 [*(p.log_path for p in (*gateways, *monitors.values())), reader.path, os.path.join(RUN, "probes.jsonl"),
                                  os.path.join(RUN, "cluster", "<port>", "redis.log"), os.path.join(RUN, "pg", "pg.log"),
                                  os.path.join(RUN, "kafka", "kafka.log")], T_START)
except BaseException as error:
    exit_code = harness.failure(error, log, (*gateways, *monitors.values()), tail_lines=8)
finally:
    cleanup()
sys.exit(exit_code)
