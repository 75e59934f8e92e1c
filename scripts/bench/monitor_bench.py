#!/usr/bin/env python3
"""Monitor benchmarks (run by bench.py; needs the services of scripts/services.sh running).

1. History writer capacity: N history entries are put in the streams before the monitor starts;
   rows/s from the first row in PostgreSQL to the last; baseline: the same rows through psql's
   \copy into a table of the same shape, right after.
2. Offline scan cost with nothing stale: mean scan time with an empty fleet, then with the whole
   fleet (default 1,000,000 devices) online; O(stale) means the two are about equal.
3. Offline detection at scale: STALE of the fleet's devices fall silent at once; seconds from that
   moment (the next scan starts within SCAN_INTERVAL_SECONDS=1) until all are offline in
   PostgreSQL and until all their events are published to Kafka.

Runs in its own PostgreSQL database (heartbeat_monitor_bench) and Redis database 1, so it does not
disturb the gateway benchmarks; with --redis-cluster, on a Redis Cluster instead (database 0 of
every primary, flushed before and after; each bucket's commands go to the primary serving its slot). Devices not meant to go stale are scored one hour ahead, so they
stay fresh without a load generator. Prints one JSON object.
"""
import argparse, hashlib, json, os, re, signal, subprocess, sys, time, urllib.request

parser = argparse.ArgumentParser()
parser.add_argument("--bin", required=True, help="directory of the release binaries")
parser.add_argument("--redis-port", help="a single Redis (database 1 is used)")
parser.add_argument("--redis-cluster", help="seed nodes host:port,… of a Redis Cluster instead of --redis-port")
parser.add_argument("--postgres-url", required=True, help="URL of any database on the server (a bench database is created next to it)")
parser.add_argument("--kafka", required=True)
parser.add_argument("--devices", type=int, default=1_000_000)
parser.add_argument("--stale", type=int, default=10_000)
parser.add_argument("--history-rows", type=int, default=500_000)
parser.add_argument("--admin-port", type=int, default=8093)
parser.add_argument("--log", default="/dev/null")
parser.add_argument("--buckets", type=int, default=16)
parser.add_argument("--resident", action="store_true",
                    help="also give every device of the fleet the hash a beating device has (token digest, assigned playlist, "
                         "last heartbeat, a real player's payload) and report Redis memory per device")
args = parser.parse_args()
if bool(args.redis_port) == bool(args.redis_cluster):
    parser.error("give one of --redis-port and --redis-cluster")

BUCKETS = args.buckets
REDIS_DB = "0" if args.redis_cluster else "1"
ADMIN_TOKEN = "monitor-bench-admin-token-0123"
db_url = re.sub(r"/[^/?]+(\?|$)", r"/heartbeat_monitor_bench\1", args.postgres_url, count=1)
admin_url = re.sub(r"/[^/?]+(\?|$)", r"/postgres\1", args.postgres_url, count=1)


def log(message):
    print(f"monitor bench: {message}", file=sys.stderr, flush=True)


def psql(url, sql):
    return subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-Atqc", sql], check=True, capture_output=True, text=True).stdout.strip()


class Session:
    """One long-lived psql: polling through it costs a query, not a process start (which would
    steal CPU from the monitor being measured)."""

    def __init__(self, url):
        self.process = subprocess.Popen(["psql", url, "-Atq", "-v", "ON_ERROR_STOP=0"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)

    def scalar(self, sql):
        self.process.stdin.write(sql.rstrip(";") + ";\n\\echo __end__\n")
        self.process.stdin.flush()
        lines = []
        while (line := self.process.stdout.readline().rstrip("\n")) != "__end__":
            lines.append(line)
        return lines[-1] if lines else None

    def close(self):
        self.process.stdin.close()
        self.process.wait()


def slot(key):
    """The cluster slot of a key (CRC16-XMODEM of its hash tag, mod 16384)."""
    k = key.encode()
    start = k.find(b"{")
    if start >= 0:
        end = k.find(b"}", start + 1)
        if end > start + 1:
            k = k[start + 1:end]
    crc = 0
    for byte in k:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc % 16384


def primaries():
    """Ports of the cluster's primaries and, per slot range, which serves it."""
    seed = args.redis_cluster.split(",")[0].rsplit(":", 1)[1]
    out = subprocess.run(["redis-cli", "-p", seed, "CLUSTER", "SLOTS"], check=True, capture_output=True, text=True).stdout.split("\n")
    # flat output: start, end, host, port, id, [replica host, port, id]…; ranges start where two integers follow a non-integer
    ranges, i = [], 0
    lines = [line.strip() for line in out if line.strip()]
    while i + 4 < len(lines):
        if lines[i].isdigit() and lines[i + 1].isdigit() and not lines[i + 2].isdigit():
            ranges.append((int(lines[i]), int(lines[i + 1]), lines[i + 3]))
            i += 5
        else:
            i += 1
    return ranges


def port_of_bucket(b):
    if not args.redis_cluster:
        return args.redis_port
    s = slot(f"{{{b}}}")
    return next(port for start, end, port in CLUSTER_RANGES if start <= s <= end)


def redis(*command, port=None):
    """One command; in cluster mode sent to `port` (default: the node serving its key's slot, via -c)."""
    where = port or (args.redis_port if not args.redis_cluster else CLUSTER_RANGES[0][2])
    cli = ["redis-cli", "-p", where, "-n", REDIS_DB] + (["-c"] if args.redis_cluster and port is None else [])
    return subprocess.run([*cli, *command], check=True, capture_output=True, text=True).stdout.strip()


def every_primary(*command):
    return [redis(*command, port=port) for port in sorted({p for _, _, p in CLUSTER_RANGES} if args.redis_cluster else {args.redis_port})]


def used_memory():
    """Redis's used_memory, summed over the primaries."""
    return sum(int(re.search(r"^used_memory:(\d+)", info, re.M).group(1)) for info in every_primary("INFO", "memory"))


CLUSTER_RANGES = primaries() if args.redis_cluster else []


def device_id(i):
    h = hashlib.md5(str(i).encode()).hexdigest()  # the same as PostgreSQL's md5(i::text)::uuid
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def bucket(device):
    h = 2166136261
    for byte in device.encode():
        h = ((h ^ byte) * 16777619) & 0xFFFFFFFF
    return h % BUCKETS


def resp(*parts):
    out = [f"*{len(parts)}\r\n".encode()]
    for part in parts:
        data = part if isinstance(part, bytes) else str(part).encode()
        out += [f"${len(data)}\r\n".encode(), data, b"\r\n"]
    return b"".join(out)


def pipe(commands):
    """Sends (bucket, RESP command) pairs through redis-cli --pipe (fast bulk load), each bucket's
    to the node serving it."""
    by_port = {}
    for b, command in commands:
        by_port.setdefault(port_of_bucket(b), []).append(command)
    for port, part in by_port.items():
        result = subprocess.run(["redis-cli", "-p", port, "-n", REDIS_DB, "--pipe"], input=b"".join(part), capture_output=True)
        if result.returncode != 0 or b"errors: 0" not in result.stdout:
            sys.exit(f"monitor bench: redis --pipe failed: {result.stdout[-300:]!r} {result.stderr[-300:]!r}")


def now_ms():
    seconds, micros = redis("TIME").split()
    return int(seconds) * 1000 + int(micros) // 1000


def scan_stats():
    text = urllib.request.urlopen(f"http://127.0.0.1:{args.admin_port}/metrics", timeout=5).read().decode()
    total = sum(float(v) for v in re.findall(r"^monitor_scan_duration_seconds_sum\S* (\S+)", text, re.M))
    count = sum(float(v) for v in re.findall(r"^monitor_scan_duration_seconds_count\S* (\S+)", text, re.M))
    return total, count


def mean_scan_ms(seconds):
    s0, c0 = scan_stats()
    time.sleep(seconds)
    s1, c1 = scan_stats()
    return 1000 * (s1 - s0) / max(c1 - c0, 1), int(c1 - c0)


def wait_until(predicate, timeout, poll=0.05):
    started = time.time()
    while time.time() - started < timeout:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    return None


monitor = None
try:
    psql(admin_url, "DROP DATABASE IF EXISTS heartbeat_monitor_bench")
    psql(admin_url, "CREATE DATABASE heartbeat_monitor_bench")
    every_primary("FLUSHDB")
    for b in range(BUCKETS):  # the registry is loaded by this script, not re-seeded
        redis("SET", f"hb:{{{b}}}:seeded", "1")

    env = dict(os.environ, REDIS_URL=f"redis://127.0.0.1:{args.redis_port or 6379}/{REDIS_DB}", BUCKETS=str(BUCKETS), POSTGRES_URL=db_url, KAFKA_BROKERS=args.kafka,
               ADMIN_PORT=str(args.admin_port), ADMIN_TOKEN=ADMIN_TOKEN, OFFLINE_AFTER_SECONDS="5", SCAN_INTERVAL_SECONDS="1",
               RECONCILE_INTERVAL_SECONDS="3600",  # the bench devices are not all in the online sets
               LOG_LEVEL="warning")
    if args.redis_cluster:
        env["REDIS_CLUSTER_NODES"] = args.redis_cluster

    # The devices whose history is written are registered, as in production, so the writer's
    # write-behind of devices.last_heartbeat costs what it costs: a first monitor run creates the
    # schema, then the 50,000 devices are inserted.
    monitor = subprocess.Popen([os.path.join(args.bin, "heartbeat-monitor")], env=env, stdout=open(args.log, "w"), stderr=subprocess.STDOUT)
    if not wait_until(lambda: psql(db_url, "SELECT count(*) FROM pg_tables WHERE tablename = 'applied_transitions'") == "1", 60, poll=0.2):
        sys.exit("monitor bench: the monitor did not migrate the database within 60 s")
    monitor.send_signal(signal.SIGTERM)
    monitor.wait(timeout=20)
    psql(db_url, """INSERT INTO devices (id, name, status, last_heartbeat, status_changed_at, status_version)
                    SELECT md5(i::text)::uuid, 'bench-' || i, 'online', now() - interval '1 minute', now(), 1
                    FROM generate_series(0, 49999) i""")

    # 1. history entries waiting before the monitor starts
    log(f"loading {args.history_rows} history entries")
    started_ms = now_ms()
    commands = []
    for i in range(args.history_rows):
        device = device_id(i % 50_000)
        stored = f"{started_ms - 1000}\tp1\t64\t32\tconnected\t1.2.3"
        commands.append((bucket(device), resp("XADD", f"hb:{{{bucket(device)}}}:history", "*", "d", device, "t", started_ms + i // 1000, "p", stored)))
    pipe(commands)

    monitor = subprocess.Popen([os.path.join(args.bin, "heartbeat-monitor")], env=env, stdout=open(args.log, "a"), stderr=subprocess.STDOUT)

    db = Session(db_url)

    def history_count():
        # the writer's own counter: polling count(*) would scan the growing table and steal the CPU being measured
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{args.admin_port}/metrics", timeout=5).read().decode()
        except OSError:
            return 0  # not listening yet
        return int(sum(float(v) for v in re.findall(r"^monitor_history_rows_written_total\S* (\S+)", text, re.M)))

    first = wait_until(lambda: history_count() or None, 60, poll=0.05)
    if not first:
        sys.exit("monitor bench: no history row within 60 s")
    t_first = time.time()
    done = wait_until(lambda: history_count() >= args.history_rows, 300, poll=0.2)
    t_done = time.time()
    history_rate = (args.history_rows - first) / (t_done - t_first)
    done = done and int(db.scalar("SELECT count(*) FROM heartbeat_history")) == args.history_rows
    log(f"history: {args.history_rows} rows, {history_rate:.0f} rows/s")

    # baseline, same minutes: PostgreSQL alone taking the same rows through psql's \copy (no Redis,
    # no monitor), so the writer's rate can be read as a ratio on this shared machine
    copy_file = os.path.join(os.path.dirname(os.path.abspath(args.log)), "monitor-bench-history.copy")
    received = lambda i: time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime((started_ms + i // 1000) / 1000)) + f".{(started_ms + i // 1000) % 1000:03d}Z"
    with open(copy_file, "w") as rows:
        for i in range(args.history_rows):
            device = device_id(i % 50_000)
            rows.write(f"{device}\t{received(i)}\t" + '{"device_id":"' + device + '","timestamp":"2026-11-29T06:00:00.000Z",'
                       '"current_playlist":"p1","storage_status":{"total_gb":64,"used_gb":32},"network_status":"connected",'
                       '"player_version":"1.2.3"}\t2026-11-29T06:00:00.000Z\n')
    psql(db_url, "CREATE TABLE copy_baseline (LIKE heartbeat_history); CREATE INDEX ON copy_baseline (device_id, received_at DESC)")
    copy_started = time.time()
    psql(db_url, f"\\copy copy_baseline (device_id, received_at, payload, device_time) FROM '{copy_file}'")
    copy_rate = args.history_rows / (time.time() - copy_started)
    os.remove(copy_file)
    log(f"baseline: psql \\copy of the same rows, {copy_rate:.0f} rows/s")

    # 2. scan cost with nothing stale: the 50,000 history devices are online in PostgreSQL but in
    #    no online set, so the reconciler (every 300 s) does not run during these seconds
    wait_until(lambda: '"leader":true' in urllib.request.urlopen(f"http://127.0.0.1:{args.admin_port}/readyz", timeout=5).read().decode(), 30)
    time.sleep(1)
    empty_ms, empty_scans = mean_scan_ms(5)

    # the fleet: rows in PostgreSQL (online), members of the online sets scored an hour ahead
    log(f"loading {args.devices} devices")
    psql(db_url, f"""INSERT INTO devices (id, name, status, last_heartbeat, status_changed_at, status_version)
                     SELECT md5(i::text)::uuid, 'bench-' || i, 'online', now(), now(), 1 FROM generate_series(0, {args.devices - 1}) i
                     ON CONFLICT (id) DO UPDATE SET last_heartbeat = now()""")
    ahead = now_ms() + 3_600_000
    memory_before = used_memory()
    if args.resident:
        # what a registered device that beats has: the registry's token digest and playlist, the
        # gateway's last heartbeat and payload (stored form of a real player's body)
        payload = f"{ahead - 3_600_000}\t6f7e2c1a-1c2b-4f6a-9e1d-3a5b7c9d0e1f\t64\t31.5\tconnected\t2.14.3"
        batch = []
        for i in range(args.devices):
            device = device_id(i)
            b = bucket(device)
            batch.append((b, resp("HSET", f"hb:{{{b}}}:dev:{device}", "token", hashlib.md5(device.encode()).hexdigest(),
                                  "playlist", "6f7e2c1a-1c2b-4f6a-9e1d-3a5b7c9d0e1f", "last_heartbeat", ahead - 3_600_000, "payload", payload)))
            if len(batch) >= 500_000:
                pipe(batch)
                batch = []
        pipe(batch)
    members = [[] for _ in range(BUCKETS)]
    for i in range(args.devices):
        device = device_id(i)
        members[bucket(device)].append(device)
    commands = []
    for b, ids in enumerate(members):
        for chunk in range(0, len(ids), 1000):
            part = ids[chunk:chunk + 1000]
            commands.append((b, resp("ZADD", f"hb:{{{b}}}:online", *[x for device in part for x in (ahead, device)])))
    pipe(commands)
    online = sum(int(redis("ZCARD", f"hb:{{{b}}}:online")) for b in range(BUCKETS))
    bytes_per_device = (used_memory() - memory_before) / args.devices
    log(f"Redis memory: {bytes_per_device:.0f} B per device ({'hash and online-set entry' if args.resident else 'online-set entry only'})")
    full_ms, full_scans = mean_scan_ms(5)
    log(f"scan with nothing stale: {empty_ms:.2f} ms (0 online), {full_ms:.2f} ms ({online} online)")

    # 3. STALE devices fall silent at once: their scores move 10 minutes back
    # devices of the history phase may be offline already: count from here
    offline_before = int(db.scalar("SELECT count(*) FROM devices WHERE status = 'offline'"))
    # Polled every 50 ms, the exact counts cost PostgreSQL more than half a core (a count over the
    # status index of every device): the poll stole CPU from the monitor it measures. Each status
    # change writes one outbox row in its transaction, so the newest outbox id (one index probe)
    # says when to look; the exact count confirms. Published: no unpublished row left past the mark
    # (one probe of the unpublished-rows index).
    outbox_before = int(db.scalar("SELECT coalesce(max(id), 0) FROM outbox"))

    def all_applied():
        if int(db.scalar("SELECT coalesce(max(id), 0) FROM outbox")) - outbox_before < stale:
            return False
        return int(db.scalar("SELECT count(*) FROM devices WHERE status = 'offline'")) - offline_before >= stale

    def all_published():
        return db.scalar(f"SELECT EXISTS (SELECT 1 FROM outbox WHERE published_at IS NULL AND id > {outbox_before})") == "f"
    stale_at = now_ms() - 600_000
    commands = [(bucket(device_id(i)), resp("ZADD", f"hb:{{{bucket(device_id(i))}}}:online", "XX", stale_at, device_id(i)))
                for i in range(0, args.devices, args.devices // args.stale)][:args.stale]
    stale = len(commands)
    t0 = time.time()
    pipe(commands)
    applied = wait_until(all_applied, 120, poll=0.05)
    t_applied = time.time() - t0
    published = applied and wait_until(all_published, 120, poll=0.05)
    t_published = time.time() - t0
    offline_events = int(db.scalar("SELECT count(*) FROM device_status_events WHERE to_status = 'offline'"))
    wrongly = int(db.scalar("SELECT count(*) FROM devices WHERE status = 'offline'")) - offline_before - stale
    db.close()
    log(f"{stale} stale of {online}: applied in {t_applied:.2f} s, published in {t_published:.2f} s")
    print(json.dumps({
        "history_rows": args.history_rows, "history_rows_per_s": round(history_rate), "history_complete": bool(done),
        "copy_baseline_rows_per_s": round(copy_rate),
        "online": online, "scan_ms_empty_fleet": round(empty_ms, 2), "scan_ms_full_fleet": round(full_ms, 2),
        "scans_measured": [empty_scans, full_scans],
        "stale": stale, "applied_s": round(t_applied, 2) if applied else None, "published_s": round(t_published, 2) if published else None,
        "offline_events": offline_events, "wrongly_offline": wrongly,
        "redis_bytes_per_device": round(bytes_per_device), "resident": args.resident,
    }))
finally:
    if monitor and monitor.poll() is None:
        monitor.send_signal(signal.SIGTERM)
        try:
            monitor.wait(timeout=20)
        except subprocess.TimeoutExpired:
            monitor.kill()
    every_primary("FLUSHDB")
    subprocess.run(["psql", admin_url, "-qc", "DROP DATABASE IF EXISTS heartbeat_monitor_bench"], capture_output=True)
