#!/usr/bin/env python3
"""make bench: starts the stack (release builds), measures, writes docs/benchmarks.md.

Every headline number is a ratio against baselines measured in the same run, on the same
machine, right before or after: nginx answering a fixed JSON 200, the gateway's own no-op route
(GET /healthz), and the Go peer (../shared/peers/go-heartbeat: net/http + redigo running the
project's own heartbeat script on the same Redis and devices). Each measurement is repeated
(--runs, default 5, the order alternating between runs): min / median / max. Five, not three:
rounds of one run spread by up to ±5% on this shared machine, and one slow or fast round moved a
median of three by as much. Every heartbeat run
also reads the CPU the gateway and Redis used (/proc) and the script's own time in Redis
(INFO commandstats), per heartbeat.

Then (unless --no-cluster) the same heartbeats against a three-primary Redis Cluster with no replicas
(scripts/redis_cluster.py; a second gateway and monitor with REDIS_CLUSTER_NODES), alternating with
the single-Redis gateway, and the monitor benchmark a second time on that cluster.

The results are also written to docs/benchmarks.json; the summary printed at the end shows the
previous run's value next to each, so a regression shows at once (and as a diff in git).
"""
import argparse, json, os, re, resource, shutil, signal, statistics, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
parser = argparse.ArgumentParser()
parser.add_argument("--runs", type=int, default=5)
parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
parser.add_argument("--devices", type=int, default=10000)
parser.add_argument("--connections", type=int, default=64)
parser.add_argument("--output", default=os.path.join(ROOT, "docs", "benchmarks.md"))
parser.add_argument("--scan-devices", type=int, default=1_000_000, help="fleet of the offline-scan benchmark")
parser.add_argument("--soak", type=int, default=600, help="seconds of steady load watching memory (0: skip)")
parser.add_argument("--soak-rate", type=int, default=2000, help="heartbeats/s during the soak")
parser.add_argument("--peer", default=os.path.join(os.path.dirname(ROOT), "shared", "peers", "go-heartbeat"),
                    help="folder of the Go peer (build.sh); empty: skip it")
parser.add_argument("--results", default=os.path.join(ROOT, "docs", "benchmarks.json"), help="this run's figures, and the previous run's")
parser.add_argument("--no-cluster", action="store_true", help="skip the Redis Cluster comparison (and its monitor benchmark)")
parser.add_argument("--cluster-port", type=int, default=7341, help="first port of the three cluster primaries (+10000: their bus)")
parser.add_argument("--no-build", action="store_true",
                    help="use the release binaries already in .build/release (and the Go peer already in .build-peer) instead of building")
args = parser.parse_args()

RUN = os.path.join(ROOT, ".run", "bench")
env = dict(os.environ, HEARTBEAT_RUN_DIR=RUN, REDIS_PORT="6392", PG_PORT="5442")
HTTP_PORT, ADMIN_PORT, NGINX_PORT, PEER_PORT = 8090, 8091, 8099, 8098
CLUSTER_HTTP_PORT, CLUSTER_ADMIN_PORT = 8096, 8094  # the gateway and the monitor on the Redis Cluster
MONITOR_BENCH_ADMIN_PORT = 8097  # not monitor_bench.py's default (8093), which a standalone run may hold
ADMIN_TOKEN = "bench-admin-token-0123456789"
children = []
cluster = None  # the RedisCluster while it runs


def sh(*cmd, **kw):
    return subprocess.run(cmd, cwd=ROOT, env=env, check=True, text=True, capture_output=True, **kw).stdout


def wait_ready(url, name):
    for _ in range(150):
        try:
            with urllib.request.urlopen(url, timeout=1) as reply:
                if reply.status == 200:
                    return
        except Exception:
            time.sleep(0.2)
    sys.exit(f"bench: {name} not ready at {url}")


def start(name, argv, extra, log):
    process = subprocess.Popen(argv, cwd=ROOT, env=dict(env, **extra), stdout=open(log, "w"), stderr=subprocess.STDOUT)
    children.append(process)
    return process


def stop_all():
    for process in children:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in children:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
    if cluster is not None:
        cluster.stop()
    subprocess.run([os.path.join(ROOT, "scripts", "services.sh"), "stop"], cwd=ROOT, env=env, capture_output=True)


def wrk(url, script=None, script_args=(), connections=None, duration=None):
    argv = ["wrk", "-t1", f"-c{connections or args.connections}", f"-d{duration or args.duration}s", "--latency"]
    if script:
        argv += ["-s", script]
    argv += [url]
    if script_args:
        argv += ["--", *script_args]
    client0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    client1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu = (client1.ru_utime + client1.ru_stime) - (client0.ru_utime + client0.ru_stime)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    def millis(text):
        value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
        return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
    p99 = millis(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    p50 = millis(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    non2xx = int((re.search(r"Non-2xx or 3xx responses: (\d+)", out) or [0, 0])[1])
    socket_errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    return {"rps": rps, "p50": p50, "p99": p99, "errors": non2xx + socket_errors, "requests": total,
            "client_cpu_us": client_cpu / max(total, 1) * 1e6, "raw": out}


def summary(values):
    return min(values), statistics.median(values), max(values)


def handler_histogram(port):
    """The gateway's heartbeat_request_duration_seconds buckets now: {upper bound (s): count}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {float("inf") if le == "+Inf" else float(le): float(count)
            for le, count in re.findall(r'^heartbeat_request_duration_seconds_bucket\{le="([^"]+)"\} (\S+)', text, re.M)}


def handler_quantile(before, after, q):
    """Upper bound (ms) of the bucket holding quantile q of what the histogram recorded between two snapshots."""
    counts = sorted((le, after[le] - before.get(le, 0)) for le in after)
    total = counts[-1][1] if counts else 0
    for le, count in counts:
        if total and count >= q * total:
            return le * 1000
    return None


def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds_named(name):
    """utime + stime of every process called `name` (PostgreSQL's backends), in seconds."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            text = open(f"/proc/{pid}/stat").read()
        except OSError:
            continue
        if text[text.index("(") + 1:text.rindex(")")] == name:
            fields = text.rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def script_stats(port):
    """(calls, microseconds) of EVALSHA and EVAL so far, from INFO commandstats."""
    text = subprocess.run(["redis-cli", "-p", port, "INFO", "commandstats"], capture_output=True, text=True, check=True).stdout
    calls = usec = 0
    for name in ("evalsha", "eval"):
        match = re.search(rf"cmdstat_{name}:calls=(\d+),usec=(\d+)", text)
        if match:
            calls, usec = calls + int(match.group(1)), usec + int(match.group(2))
    return calls, usec


try:
    for tool in ("wrk", "nginx", "redis-cli"):
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} missing: run scripts/install-deps.sh")
    if args.no_build:
        bin_path = os.path.join(ROOT, ".build", "release")
        for product in ("heartbeat-ingest", "heartbeat-monitor", "heartbeat-loadgen"):
            if not os.access(os.path.join(bin_path, product), os.X_OK):
                sys.exit(f"bench: --no-build: {bin_path}/{product} missing")
    else:
        print("bench: building release binaries", file=sys.stderr)
        sh("swift", "build", "-c", "release", "--product", "heartbeat-ingest")
        sh("swift", "build", "-c", "release", "--product", "heartbeat-monitor")
        sh("swift", "build", "-c", "release", "--product", "heartbeat-loadgen")
        bin_path = sh("swift", "build", "-c", "release", "--show-bin-path").strip()
    peer_dir = os.path.join(ROOT, ".build-peer")
    if args.peer and args.no_build and os.access(os.path.join(peer_dir, "peer-go"), os.X_OK):
        print("bench: --no-build: the Go peer already in .build-peer", file=sys.stderr)
    elif args.peer:
        print("bench: building the Go peer", file=sys.stderr)
        sh("bash", os.path.join(args.peer, "build.sh"), peer_dir, ROOT)
    sh(os.path.join(ROOT, "scripts", "services.sh"), "start")
    services = dict(line.replace("export ", "").split("=", 1) for line in sh(os.path.join(ROOT, "scripts", "services.sh"), "env").splitlines() if line.startswith("export"))
    sh("redis-cli", "-p", "6392", "FLUSHALL")
    subprocess.run(["psql", services["POSTGRES_URL"], "-qc", "DROP SCHEMA public CASCADE; CREATE SCHEMA public;"], check=True, capture_output=True)

    monitor = start("monitor", [os.path.join(bin_path, "heartbeat-monitor")], {
        "REDIS_URL": services["REDIS_URL"], "POSTGRES_URL": services["POSTGRES_URL"], "KAFKA_BROKERS": services["KAFKA_BROKERS"],
        "ADMIN_PORT": str(ADMIN_PORT), "ADMIN_TOKEN": ADMIN_TOKEN, "LOG_LEVEL": "warning"}, os.path.join(RUN, "monitor.log"))
    gateway = start("gateway", [os.path.join(bin_path, "heartbeat-ingest")], {
        "REDIS_URL": services["REDIS_URL"], "HTTP_HOST": "127.0.0.1", "HTTP_PORT": str(HTTP_PORT),
        "HEARTBEAT_MIN_INTERVAL_SECONDS": "0", "LOG_LEVEL": "warning"}, os.path.join(RUN, "gateway.log"))
    nginx_dir = tempfile.mkdtemp(prefix="hb-nginx-")
    with open(os.path.join(nginx_dir, "nginx.conf"), "w") as conf:
        conf.write(f"""worker_processes auto; daemon off; pid {nginx_dir}/nginx.pid; error_log {nginx_dir}/error.log;
events {{ worker_connections 1024; }}
http {{ access_log off; client_body_temp_path {nginx_dir}; proxy_temp_path {nginx_dir}; fastcgi_temp_path {nginx_dir};
  uwsgi_temp_path {nginx_dir}; scgi_temp_path {nginx_dir};
  server {{ listen 127.0.0.1:{NGINX_PORT}; location / {{ default_type application/json; return 200 '{{"status":"ok"}}'; }} }} }}
""")
    nginx = start("nginx", ["nginx", "-c", os.path.join(nginx_dir, "nginx.conf")], {}, os.path.join(RUN, "nginx.log"))
    if args.peer:
        peer_process = start("peer", [os.path.join(peer_dir, "peer-go")], {
            "HB_SCRIPT": os.path.join(peer_dir, "heartbeat.lua"), "REDIS_ADDR": "127.0.0.1:6392", "BUCKETS": "16",
            "ADDR": f"127.0.0.1:{PEER_PORT}"}, os.path.join(RUN, "peer.log"))
    wait_ready(f"http://127.0.0.1:{ADMIN_PORT}/readyz", "monitor")
    wait_ready(f"http://127.0.0.1:{HTTP_PORT}/readyz", "gateway")
    wait_ready(f"http://127.0.0.1:{NGINX_PORT}/", "nginx")
    # a server left from an interrupted run would answer in their place (and its CPU go unmeasured)
    for name, process in [("monitor", monitor), ("gateway", gateway), ("nginx", nginx)] + ([("Go peer", peer_process)] if args.peer else []):
        time.sleep(0.2)
        if process.poll() is not None:
            sys.exit(f"bench: the {name} exited at start (port taken by a process of an earlier run?); see its log in {RUN}")
    redis_pid = int(re.search(r"process_id:(\d+)", sh("redis-cli", "-p", "6392", "INFO", "server")).group(1))

    devices_file = os.path.join(RUN, "devices.tsv")
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "bench", "register_devices.py"), str(args.devices), devices_file,
                    "--admin", f"http://127.0.0.1:{ADMIN_PORT}"], env=dict(env, ADMIN_TOKEN=ADMIN_TOKEN), check=True)

    def history_rows():
        return int(subprocess.run(["psql", services["POSTGRES_URL"], "-Atc", "SELECT count(*) FROM heartbeat_history"],
                                  capture_output=True, text=True, check=True).stdout.strip() or 0)

    results = {"nginx": [], "noop": [], "heartbeat": [], "peer": [], "heartbeat_c1": []}
    per_heartbeat = {"gateway_cpu_us": [], "redis_cpu_us": [], "script_us": [], "shared_cpu_us": [],
                     "peer_cpu_us": [], "peer_redis_cpu_us": []}
    history_rates = []
    script = os.path.join(ROOT, "deploy", "loadtest", "heartbeat.lua")

    def heartbeat_run():
        calls0, usec0 = script_stats("6392")
        gateway0, redis0 = cpu_seconds(gateway.pid), cpu_seconds(redis_pid)
        shared0 = cpu_seconds(monitor.pid) + cpu_seconds_named("postgres")
        before, started = history_rows(), time.time()
        result = wrk(f"http://127.0.0.1:{HTTP_PORT}", script, (devices_file,))
        history_rates.append((history_rows() - before) / (time.time() - started))
        calls1, usec1 = script_stats("6392")
        done = max(result["requests"], 1)
        per_heartbeat["gateway_cpu_us"].append((cpu_seconds(gateway.pid) - gateway0) / done * 1e6)
        per_heartbeat["redis_cpu_us"].append((cpu_seconds(redis_pid) - redis0) / done * 1e6)
        per_heartbeat["shared_cpu_us"].append((cpu_seconds(monitor.pid) + cpu_seconds_named("postgres") - shared0) / done * 1e6)
        per_heartbeat["script_us"].append((usec1 - usec0) / max(calls1 - calls0, 1))
        results["heartbeat"].append(result)

    def peer_run():
        peer0, redis0 = cpu_seconds(peer_process.pid), cpu_seconds(redis_pid)
        result = wrk(f"http://127.0.0.1:{PEER_PORT}", script, (devices_file,))
        done = max(result["requests"], 1)
        per_heartbeat["peer_cpu_us"].append((cpu_seconds(peer_process.pid) - peer0) / done * 1e6)
        per_heartbeat["peer_redis_cpu_us"].append((cpu_seconds(redis_pid) - redis0) / done * 1e6)
        results["peer"].append(result)

    steps = [
        ("nginx", lambda: results["nginx"].append(wrk(f"http://127.0.0.1:{NGINX_PORT}/"))),
        ("noop", lambda: results["noop"].append(wrk(f"http://127.0.0.1:{HTTP_PORT}/healthz"))),
        ("heartbeat", heartbeat_run),
    ]
    if args.peer:
        steps.append(("peer", peer_run))
    for run in range(args.runs):
        order = steps if run % 2 == 0 else list(reversed(steps))  # alternating, so neither side always goes first
        print(f"bench: run {run + 1}/{args.runs}: {', '.join(name for name, _ in order)}", file=sys.stderr)
        for _, step in order:
            step()
    # latency without queueing: one connection
    for _ in range(args.runs):
        results["heartbeat_c1"].append(wrk(f"http://127.0.0.1:{HTTP_PORT}", script, (devices_file,), connections=1))

    # drain: how long the history writer needs to catch up after the last run
    # every heartbeat answered 200 writes a history row: the gateway's, at 1 connection too, and the Go peer's
    accepted = sum(r["requests"] - r["errors"] for name in ("heartbeat", "heartbeat_c1", "peer") for r in results.get(name, []))
    drain_started = time.time()
    while history_rows() < accepted and time.time() - drain_started < 120:
        time.sleep(0.5)
    drained_rows, drain_seconds = history_rows(), time.time() - drain_started

    rss_peak_kb = int(re.search(r"VmHWM:\s+(\d+)", open(f"/proc/{gateway.pid}/status").read()).group(1))
    redis = lambda *a: sh("redis-cli", "-p", "6392", *a).strip()
    online = sum(int(redis("ZCARD", f"hb:{{{b}}}:online")) for b in range(16))
    zset_bytes = sum(int(redis("MEMORY", "USAGE", f"hb:{{{b}}}:online") or 0) for b in range(16))
    sample = [line.split("\t")[0] for line in open(devices_file).read().splitlines()[:200]]
    keys = [k for k in redis("KEYS", "hb:*:dev:*").splitlines()]
    by_id = {k.rsplit(":", 1)[1]: k for k in keys}
    hash_bytes = statistics.mean(int(redis("MEMORY", "USAGE", by_id[i])) for i in sample if i in by_id)
    per_device = hash_bytes + zset_bytes / max(online, 1)

    # Redis Cluster, three primaries, no replicas: a second gateway and monitor on it, the same
    # heartbeats against both gateways, alternating
    compare = None
    if not args.no_cluster:
        sys.path.insert(0, os.path.join(ROOT, "scripts"))
        import redis_cluster
        print("bench: Redis Cluster: three primaries, no replicas", file=sys.stderr)
        cluster = redis_cluster.RedisCluster(os.path.join(RUN, "cluster"), args.cluster_port, primaries=3, replicas=0,
                                             log=lambda message: print(f"bench: {message}", file=sys.stderr))
        cluster.lock()
        cluster.stop()  # nodes of this run dir left by an interrupted bench (only redis-servers working in its node dirs)
        seeds = cluster.start()
        primaries = [n.port for n in cluster.primaries_now()]
        node_pid = {port: cluster.pid(port) for port in primaries}
        node_buckets = {port: cluster.buckets_of(port) for port in primaries}
        cluster_db = re.sub(r"/[^/?]+(\?|$)", r"/heartbeat_bench_cluster\1", services["POSTGRES_URL"], count=1)
        pg_admin = re.sub(r"/[^/?]+(\?|$)", r"/postgres\1", services["POSTGRES_URL"], count=1)
        for sql in ("DROP DATABASE IF EXISTS heartbeat_bench_cluster", "CREATE DATABASE heartbeat_bench_cluster"):
            subprocess.run(["psql", pg_admin, "-qc", sql], check=True, capture_output=True)
        on_cluster = {"REDIS_URL": f"redis://127.0.0.1:{primaries[0]}", "REDIS_CLUSTER_NODES": seeds}
        cluster_monitor = start("cluster monitor", [os.path.join(bin_path, "heartbeat-monitor")], dict(on_cluster, **{
            "POSTGRES_URL": cluster_db, "KAFKA_BROKERS": services["KAFKA_BROKERS"],
            "ADMIN_PORT": str(CLUSTER_ADMIN_PORT), "ADMIN_TOKEN": ADMIN_TOKEN, "LOG_LEVEL": "warning"}), os.path.join(RUN, "cluster-monitor.log"))
        wait_ready(f"http://127.0.0.1:{CLUSTER_ADMIN_PORT}/readyz", "monitor on the cluster")
        cluster_gateway = start("cluster gateway", [os.path.join(bin_path, "heartbeat-ingest")], dict(on_cluster, **{
            "HTTP_HOST": "127.0.0.1", "HTTP_PORT": str(CLUSTER_HTTP_PORT),
            "HEARTBEAT_MIN_INTERVAL_SECONDS": "0", "LOG_LEVEL": "warning"}), os.path.join(RUN, "cluster-gateway.log"))
        wait_ready(f"http://127.0.0.1:{CLUSTER_HTTP_PORT}/readyz", "gateway on the cluster")
        # the same number of devices, registered the same way (ops API: PostgreSQL, then the Redis registry)
        cluster_devices_file = os.path.join(RUN, "devices-cluster.tsv")
        subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "bench", "register_devices.py"), str(args.devices), cluster_devices_file,
                        "--admin", f"http://127.0.0.1:{CLUSTER_ADMIN_PORT}"], env=dict(env, ADMIN_TOKEN=ADMIN_TOKEN), check=True)
        # the single-Redis gateway has run for minutes: one short run warms this one (scripts loaded on every node, connections open)
        wrk(f"http://127.0.0.1:{CLUSTER_HTTP_PORT}", script, (cluster_devices_file,), duration=2)

        compare = {"single": [], "cluster": []}

        def single_compare_run():
            calls0, usec0 = script_stats("6392")
            gateway0, redis0 = cpu_seconds(gateway.pid), cpu_seconds(redis_pid)
            result = wrk(f"http://127.0.0.1:{HTTP_PORT}", script, (devices_file,))
            calls1, usec1 = script_stats("6392")
            done = max(result["requests"], 1)
            compare["single"].append({
                **{k: result[k] for k in ("rps", "p50", "p99", "errors", "requests")},
                "gateway_cpu_us": (cpu_seconds(gateway.pid) - gateway0) / done * 1e6,
                "redis_cpu_us": (cpu_seconds(redis_pid) - redis0) / done * 1e6,
                "script_us": (usec1 - usec0) / max(calls1 - calls0, 1)})

        def cluster_compare_run():
            stats0 = {port: script_stats(str(port)) for port in primaries}
            gateway0 = cpu_seconds(cluster_gateway.pid)
            nodes0 = {port: cpu_seconds(pid) for port, pid in node_pid.items()}
            result = wrk(f"http://127.0.0.1:{CLUSTER_HTTP_PORT}", script, (cluster_devices_file,))
            stats1 = {port: script_stats(str(port)) for port in primaries}
            nodes1 = {port: cpu_seconds(pid) for port, pid in node_pid.items()}
            done = max(result["requests"], 1)
            calls = {port: stats1[port][0] - stats0[port][0] for port in primaries}
            usec = {port: stats1[port][1] - stats0[port][1] for port in primaries}
            node_cpu = {port: (nodes1[port] - nodes0[port]) / done * 1e6 for port in primaries}
            compare["cluster"].append({
                **{k: result[k] for k in ("rps", "p50", "p99", "errors", "requests")},
                "gateway_cpu_us": (cpu_seconds(cluster_gateway.pid) - gateway0) / done * 1e6,
                "redis_cpu_us": sum(node_cpu.values()),
                "script_us": sum(usec.values()) / max(sum(calls.values()), 1),
                "nodes": {str(port): {"redis_cpu_us": node_cpu[port], "script_calls": calls[port],
                                      "redis_cpu_us_per_served": (nodes1[port] - nodes0[port]) * 1e6 / max(calls[port], 1),
                                      "script_us": usec[port] / max(calls[port], 1)} for port in primaries}})

        pair = [("one Redis", single_compare_run), ("cluster", cluster_compare_run)]
        for run in range(args.runs):
            order = pair if run % 2 == 0 else list(reversed(pair))
            print(f"bench: cluster comparison run {run + 1}/{args.runs}: {', '.join(name for name, _ in order)}", file=sys.stderr)
            for _, step in order:
                step()
        for process in (cluster_gateway, cluster_monitor):
            process.send_signal(signal.SIGTERM)
        for process in (cluster_gateway, cluster_monitor):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        subprocess.run(["psql", pg_admin, "-qc", "DROP DATABASE IF EXISTS heartbeat_bench_cluster"], capture_output=True)

    def monitor_bench(redis_args, log):
        """scripts/bench/monitor_bench.py on the bench's services; its progress lines go to stderr."""
        return json.loads(subprocess.run(
            [sys.executable, os.path.join(ROOT, "scripts", "bench", "monitor_bench.py"), "--bin", bin_path, *redis_args,
             "--postgres-url", services["POSTGRES_URL"], "--kafka", services["KAFKA_BROKERS"], "--devices", str(args.scan_devices),
             "--stale", str(args.scan_devices // 100), "--admin-port", str(MONITOR_BENCH_ADMIN_PORT), "--log", os.path.join(RUN, log)],
            cwd=ROOT, env=env, check=True, stdout=subprocess.PIPE, text=True).stdout)

    # the monitor alone: history writer capacity, scan cost, 10,000 of a million devices going silent
    print("bench: monitor benchmark", file=sys.stderr)
    monitor_result = monitor_bench(["--redis-port", "6392"], "monitor-bench.log")
    monitor_cluster = None
    if cluster is not None:
        print("bench: monitor benchmark on the Redis Cluster", file=sys.stderr)
        monitor_cluster = monitor_bench(["--redis-cluster", seeds], "monitor-bench-cluster.log")
        cluster.stop()
        cluster = None

    # soak: steady load, memory sampled every 10 s
    soak = None
    if args.soak > 0:
        print(f"bench: soak, {args.soak} s at {args.soak_rate} heartbeats/s", file=sys.stderr)
        soak_json = os.path.join(RUN, "soak.json")
        loadgen = subprocess.Popen(
            [os.path.join(bin_path, "heartbeat-loadgen"), "--gateway", f"http://127.0.0.1:{HTTP_PORT}", "--admin", f"http://127.0.0.1:{ADMIN_PORT}",
             "--devices-file", devices_file, "--rate", str(args.soak_rate), "--connections", "32", "--duration", str(args.soak),
             "--no-audit", "--json", soak_json],
            cwd=ROOT, env=dict(env, ADMIN_TOKEN=ADMIN_TOKEN), stdout=open(os.path.join(RUN, "soak.log"), "w"), stderr=subprocess.STDOUT)

        def rss_mb(pid):
            return int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{pid}/status").read()).group(1)) / 1024

        samples = []
        handler_before = handler_histogram(HTTP_PORT)
        soak_started = time.time()
        while loadgen.poll() is None:
            time.sleep(10)
            used = int(re.search(r"used_memory:(\d+)", sh("redis-cli", "-p", "6392", "INFO", "memory")).group(1))
            backlog = sum(int(sh("redis-cli", "-p", "6392", "XLEN", f"hb:{{{b}}}:history").strip() or 0) for b in range(16))
            samples.append((time.time() - soak_started, rss_mb(gateway.pid), rss_mb(monitor.pid), used / 1e6, backlog))
        report = json.load(open(soak_json))
        handler_after = handler_histogram(HTTP_PORT)
        handler = {q: handler_quantile(handler_before, handler_after, q) for q in (0.5, 0.99)}
        warm = [x for x in samples if x[0] >= 60] or samples
        first, last = warm[0], warm[-1]
        soak = {"report": report, "first": first, "last": last, "peak_backlog": max(x[4] for x in samples), "samples": len(samples),
                "handler": handler}

    def row(name, values, fmt="{:.0f}"):
        lo, med, hi = summary(values)
        return f"| {name} | {fmt.format(lo)} | {fmt.format(med)} | {fmt.format(hi)} |"

    hb, ng, noop = ([r["rps"] for r in results[k]] for k in ("heartbeat", "nginx", "noop"))
    peer = [r["rps"] for r in results["peer"]]
    vs_nginx = [h / n for h, n in zip(hb, ng)]
    vs_noop = [h / n for h, n in zip(hb, noop)]
    vs_peer = [h / p for h, p in zip(hb, peer)]
    p99 = [r["p99"] for r in results["heartbeat"]]
    p50_c1 = [r["p50"] for r in results["heartbeat_c1"]]
    errors = sum(r["errors"] for r in results["heartbeat"] + results["heartbeat_c1"])
    check = lambda ok: "met" if ok else "**not met**"
    cpu = open("/proc/cpuinfo").read().count("processor\t:")
    median = statistics.median
    # what, value, target, met: the one-screen summary, and docs/benchmarks.json. Ratios with three
    # decimals: at two, a median of 0.597 read "0.60" beside "not met".
    figures = [
        ("heartbeat ÷ Go peer", median(vs_peer) if vs_peer else None, "≥ 1.5", lambda v: v >= 1.5, "{:.3f}"),
        ("heartbeat ÷ no-op route", median(vs_noop), "≥ 0.6", lambda v: v >= 0.6, "{:.3f}"),
        ("heartbeat ÷ nginx", median(vs_nginx), "≥ 0.25 (0.30 stretch)", lambda v: v >= 0.25, "{:.3f}"),
        ("heartbeat requests/s (64 connections)", median(hb), "", None, "{:.0f}"),
        ("Go peer requests/s", median(peer) if peer else None, "", None, "{:.0f}"),
        ("p99 at 64 connections (ms)", median(p99), "≤ 5", lambda v: v <= 5, "{:.2f}"),
        ("p50 at 1 connection (ms)", median(p50_c1), "≤ 0.3", lambda v: v <= 0.3, "{:.3f}"),
        ("errors (non-2xx, socket)", errors, "0", lambda v: v == 0, "{:.0f}"),
        ("script time in Redis per heartbeat (µs)", median(per_heartbeat["script_us"]), "≤ 10", lambda v: v <= 10, "{:.1f}"),
        ("gateway CPU per heartbeat (µs)", median(per_heartbeat["gateway_cpu_us"]), "≤ 30", lambda v: v <= 30, "{:.1f}"),
        ("Redis CPU per heartbeat (µs)", median(per_heartbeat["redis_cpu_us"]), "", None, "{:.1f}"),
        ("Go peer CPU per heartbeat (µs)", median(per_heartbeat["peer_cpu_us"]) if peer else None, "", None, "{:.1f}"),
        ("Redis CPU per Go peer heartbeat (µs)", median(per_heartbeat["peer_redis_cpu_us"]) if peer else None, "", None, "{:.1f}"),
        ("monitor + PostgreSQL CPU per heartbeat (µs)", median(per_heartbeat["shared_cpu_us"]), "", None, "{:.1f}"),
        ("wrk CPU per heartbeat request (µs)", median([r["client_cpu_us"] for r in results["heartbeat"]]), "", None, "{:.1f}"),
        ("wrk CPU per no-op request (µs)", median([r["client_cpu_us"] for r in results["noop"]]), "", None, "{:.1f}"),
        ("history writer rows/s (500k waiting)", monitor_result["history_rows_per_s"], "≥ 50,000", lambda v: v >= 50000, "{:.0f}"),
        ("history writer ÷ psql \\copy", monitor_result["history_rows_per_s"] / monitor_result["copy_baseline_rows_per_s"], "", None, "{:.2f}"),
        ("offline detection, 1% of the fleet (s)", monitor_result["applied_s"], "≤ 5", lambda v: v <= 5, "{:.2f}"),
    ]
    cluster_vs_single = []
    if compare:
        cluster_vs_single = [c["rps"] / o["rps"] for c, o in zip(compare["cluster"], compare["single"])]
        figures += [
            ("heartbeat_cluster_vs_single", median(cluster_vs_single), "", None, "{:.2f}"),
            ("cluster heartbeat requests/s", median([r["rps"] for r in compare["cluster"]]), "", None, "{:.0f}"),
            ("cluster Redis CPU per heartbeat, all (µs)", median([r["redis_cpu_us"] for r in compare["cluster"]]), "", None, "{:.1f}"),
        ]
    if monitor_cluster:
        figures.append(("cluster offline detection, 1% (s)", monitor_cluster["applied_s"], "", None, "{:.2f}"))
    if soak:
        figures.append(("soak p50 seen by heartbeat-loadgen (ms)", soak["report"]["latency_ms"]["p50"], "", None, "{:.2f}"))
        if soak["handler"][0.5] is not None:
            figures.append(("soak p50 of the gateway's handler, ≤ (ms)", soak["handler"][0.5], "", None, "{:.2f}"))
    previous = {}
    if os.path.exists(args.results):
        try:
            previous = json.load(open(args.results)).get("figures", {})
        except ValueError:
            previous = {}

    lines = [
        "# Benchmarks",
        "",
        f"Produced by `make bench` (`scripts/bench/bench.py --runs {args.runs} --duration {args.duration} --devices {args.devices}`)"
        f" on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {cpu} cores. Release builds; Redis, PostgreSQL, the Kafka mock,",
        "the monitor (applying transitions and writing history), nginx and wrk all share the machine, so absolute numbers",
        "move from run to run: the ratios against the baselines measured in the same run are the headline.",
        "",
        f"Load: `wrk -t1 -c{args.connections} -d{args.duration}s --latency`; heartbeats from `deploy/loadtest/heartbeat.lua` over "
        f"{args.devices} devices registered through the ops API (gateway run with `HEARTBEAT_MIN_INTERVAL_SECONDS=0`).",
        "",
        "## Throughput (requests/s)",
        "",
        "| what | min | median | max |",
        "|---|---|---|---|",
        row("nginx fixed JSON 200 (baseline)", ng),
        row("gateway no-op route `GET /healthz` (baseline)", noop),
        row("gateway `POST …/heartbeat` (whole Lua script)", hb),
        *([row("Go peer `POST …/heartbeat` (same script, same Redis and devices)", peer)] if peer else []),
        row("heartbeat ÷ nginx, same run", vs_nginx, "{:.3f}"),
        row("heartbeat ÷ no-op, same run", vs_noop, "{:.3f}"),
        *([row("heartbeat ÷ Go peer, same run", vs_peer, "{:.3f}")] if peer else []),
        row("heartbeat p50 latency (ms)", [r["p50"] for r in results["heartbeat"]], "{:.2f}"),
        row("heartbeat p99 latency (ms)", p99, "{:.2f}"),
        row("heartbeat p50 latency at 1 connection (ms)", p50_c1, "{:.3f}"),
        row("gateway CPU per heartbeat (µs, /proc utime+stime ÷ requests)", per_heartbeat["gateway_cpu_us"], "{:.1f}"),
        row("Redis CPU per heartbeat (µs, the redis-server process)", per_heartbeat["redis_cpu_us"], "{:.1f}"),
        *([row("Go peer CPU per heartbeat (µs, its process)", per_heartbeat["peer_cpu_us"], "{:.1f}"),
           row("Redis CPU per Go peer heartbeat (µs)", per_heartbeat["peer_redis_cpu_us"], "{:.1f}")] if peer else []),
        row("monitor + PostgreSQL CPU per heartbeat (µs: the history each one writes, same two cores)", per_heartbeat["shared_cpu_us"], "{:.1f}"),
        row("script time in Redis per heartbeat (µs, INFO commandstats)", per_heartbeat["script_us"], "{:.1f}"),
        row("wrk's own CPU per request, nginx (µs: the client shares the cores)", [r["client_cpu_us"] for r in results["nginx"]], "{:.1f}"),
        row("wrk's own CPU per request, no-op route (µs)", [r["client_cpu_us"] for r in results["noop"]], "{:.1f}"),
        row("wrk's own CPU per request, heartbeat (µs, `heartbeat.lua`)", [r["client_cpu_us"] for r in results["heartbeat"]], "{:.1f}"),
        row("history rows written per s during the heartbeat runs", history_rates),
        "",
        "## Targets",
        "",
        "| target | measured (median) | |",
        "|---|---|---|",
        *[f"| {what} {target} | {fmt.format(value) if value is not None else 'not measured'} | {check(value is not None and ok(value))} |"
          for what, value, target, ok, fmt in figures if ok],
        # the writer's capacity (≥ 50,000 rows/s) is the monitor bench's row; here: whether it kept up
        f"| history writer never behind: every accepted heartbeat's row in PostgreSQL ≤ 10 s after the last run | "
        f"{drained_rows}/{accepted} rows after {drain_seconds:.1f} s ({statistics.median(history_rates):.0f} rows/s while loaded, "
        f"bounded by the heartbeat rate) | {check(drained_rows >= accepted and drain_seconds <= 10)} |",
        f"| Redis bytes per online device ≤ 400 | {per_device:.0f} (hash {hash_bytes:.0f} + online-set share {zset_bytes / max(online, 1):.0f}) | {check(per_device <= 400)} |",
        f"| gateway RSS ≤ 150 MB at peak | {rss_peak_kb / 1024:.0f} MB (VmHWM) | {check(rss_peak_kb <= 150 * 1024)} |",
        "",
        "The history rate in the heartbeat runs is bounded by the gateway's rate (the writer keeps up: see the drain figure);",
        "its capacity is measured on its own below.",
        "",
        "## Monitor",
        "",
        f"`scripts/bench/monitor_bench.py --devices {args.scan_devices} --stale {args.scan_devices // 100}` (run by `make bench`; own PostgreSQL",
        "database and Redis database; `OFFLINE_AFTER_SECONDS=5`, `SCAN_INTERVAL_SECONDS=1`; devices that must stay fresh are",
        "scored an hour ahead, so no load generator is needed for a million of them).",
        "",
        "| measurement | result | target | |",
        "|---|---|---|---|",
        f"| history writer, {monitor_result['history_rows']} rows waiting in the streams | {monitor_result['history_rows_per_s']} rows/s into PostgreSQL "
        f"(baseline, same run: psql `\\copy` of the same rows {monitor_result['copy_baseline_rows_per_s']} rows/s; "
        f"ratio {monitor_result['history_rows_per_s'] / monitor_result['copy_baseline_rows_per_s']:.2f}) "
        f"| ≥ 50,000 rows/s | {check(monitor_result['history_rows_per_s'] >= 50000)} |",
        f"| {monitor_result['stale']} of {monitor_result['online']} online devices fall silent: all offline in PostgreSQL | "
        f"{monitor_result['applied_s']} s after they fell silent (the next scan starts within 1 s) | ≤ 5 s | "
        f"{check(monitor_result['applied_s'] is not None and monitor_result['applied_s'] <= 5)} |",
        f"| … and all {monitor_result['stale']} `device.offline` events published to Kafka | {monitor_result['published_s']} s "
        f"({monitor_result['offline_events']} offline events, {monitor_result['wrongly_offline']} devices wrongly offline) | ≤ 5 s | "
        f"{check(monitor_result['published_s'] is not None and monitor_result['published_s'] <= 5 and monitor_result['wrongly_offline'] == 0)} |",
        f"| scan with nothing stale | {monitor_result['scan_ms_empty_fleet']} ms with 0 devices online, "
        f"{monitor_result['scan_ms_full_fleet']} ms with {monitor_result['online']} | O(stale), not O(fleet) | "
        f"{check(monitor_result['scan_ms_full_fleet'] <= max(5, 3 * monitor_result['scan_ms_empty_fleet']))} |",
        "",
    ]
    if compare:
        def trio(values, fmt="{:.0f}"):
            lo, med, hi = summary(values)
            return f"{fmt.format(lo)} / **{fmt.format(med)}** / {fmt.format(hi)}"

        def side_by_side(name, key, fmt="{:.0f}"):
            return f"| {name} | {trio([r[key] for r in compare['single']], fmt)} | {trio([r[key] for r in compare['cluster']], fmt)} |"

        cluster_runs = compare["cluster"]
        all_calls = sum(r["nodes"][str(p)]["script_calls"] for r in cluster_runs for p in primaries)
        lines += [
            "## Redis Cluster (three primaries, no replicas) vs one Redis",
            "",
            f"A Redis Cluster of three primaries and no replicas on loopback (`scripts/redis_cluster.py`, ports {primaries[0]}-{primaries[-1]};",
            "no persistence and `hash-max-listpack-value 1024`, as the single Redis), a second gateway and a second monitor on it",
            f"(`REDIS_CLUSTER_NODES`; one connection per node; the monitor on a PostgreSQL database of its own), {args.devices} devices",
            "registered through that monitor's ops API as above. The same wrk load against the single-Redis gateway and the",
            f"cluster gateway, alternating, {args.runs} run{'s' if args.runs != 1 else ''} each (these single-Redis figures are from those runs, not the table above).",
            "Redis CPU is each redis-server's utime+stime from /proc over the run ÷ the heartbeats of the run; script time is",
            "EVALSHA/EVAL time from INFO commandstats, summed over the primaries, ÷ calls.",
            "",
            "On two cores the cluster cannot be faster than one Redis: its three Redis processes share the cores with the gateway,",
            "the monitor, PostgreSQL and wrk, so what this shows is what each node costs per heartbeat, not cluster throughput.",
            "",
            "| what (min / **median** / max) | one Redis | cluster |",
            "|---|---|---|",
            side_by_side("heartbeats/s", "rps"),
            f"| cluster ÷ one Redis, same run | | {trio(cluster_vs_single, '{:.2f}')} |",
            side_by_side("p50 latency (ms)", "p50", "{:.2f}"),
            side_by_side("p99 latency (ms)", "p99", "{:.2f}"),
            side_by_side("gateway CPU per heartbeat (µs)", "gateway_cpu_us", "{:.1f}"),
            side_by_side("Redis CPU per heartbeat, all nodes (µs)", "redis_cpu_us", "{:.1f}"),
            *[f"| Redis CPU per heartbeat, node :{p} (µs) | | {trio([r['nodes'][str(p)]['redis_cpu_us'] for r in cluster_runs], '{:.1f}')} |"
              for p in primaries],
            side_by_side("script time in Redis per heartbeat (µs)", "script_us", "{:.1f}"),
            f"| errors (non-2xx, socket), all runs | {sum(r['errors'] for r in compare['single'])} | {sum(r['errors'] for r in cluster_runs)} |",
            "",
            "Per node (medians over the runs): a node's CPU per heartbeat it served is what one primary costs per heartbeat;",
            "next to the single Redis's figure, the difference is what running as a cluster node costs.",
            "",
            "| node | buckets | share of the heartbeats | Redis CPU per heartbeat, of all (µs) | Redis CPU per heartbeat it served (µs) | script µs per call |",
            "|---|---|---|---|---|---|",
            *[f"| :{p} | {len(node_buckets[p])} ({','.join(map(str, node_buckets[p]))}) | "
              f"{sum(r['nodes'][str(p)]['script_calls'] for r in cluster_runs) / max(all_calls, 1) * 100:.0f}% | "
              f"{median([r['nodes'][str(p)]['redis_cpu_us'] for r in cluster_runs]):.1f} | "
              f"{median([r['nodes'][str(p)]['redis_cpu_us_per_served'] for r in cluster_runs]):.1f} | "
              f"{median([r['nodes'][str(p)]['script_us'] for r in cluster_runs]):.1f} |" for p in primaries],
            f"| one Redis | 16 | 100% | {median([r['redis_cpu_us'] for r in compare['single']]):.1f} | "
            f"{median([r['redis_cpu_us'] for r in compare['single']]):.1f} | {median([r['script_us'] for r in compare['single']]):.1f} |",
            "",
        ]
        if monitor_cluster:
            m1, mc = monitor_result, monitor_cluster
            lines += [
                f"The monitor benchmark above, run a second time on the cluster (`monitor_bench.py --redis-cluster … --devices {args.scan_devices}"
                f" --stale {args.scan_devices // 100}`: every bucket's commands to the primary serving its slot):",
                "",
                "| measurement | one Redis | cluster |",
                "|---|---|---|",
                f"| scan with nothing stale, 0 devices online (ms) | {m1['scan_ms_empty_fleet']} | {mc['scan_ms_empty_fleet']} |",
                f"| scan with nothing stale, {m1['online']} / {mc['online']} online (ms) | {m1['scan_ms_full_fleet']} | {mc['scan_ms_full_fleet']} |",
                f"| {m1['stale']} / {mc['stale']} devices fall silent: all offline in PostgreSQL (s) | {m1['applied_s']} | {mc['applied_s']} |",
                f"| … all their `device.offline` events published (s) | {m1['published_s']} | {mc['published_s']} |",
                f"| devices wrongly offline | {m1['wrongly_offline']} | {mc['wrongly_offline']} |",
                f"| history writer, {m1['history_rows']} rows waiting (rows/s) | {m1['history_rows_per_s']} | {mc['history_rows_per_s']} |",
                "",
            ]
    if soak:
        r, first, last = soak["report"], soak["first"], soak["last"]
        grew = lambda a, b: (b - a) / a * 100 if a else 0
        steady = grew(first[1], last[1]) <= 10 and grew(first[2], last[2]) <= 10 and grew(first[3], last[3]) <= 10
        lines += [
            "## Soak",
            "",
            f"`heartbeat-loadgen --rate {args.soak_rate} --connections 32 --duration {args.soak} --no-audit` over the same devices, with the",
            "monitor writing history; memory sampled every 10 s, compared from minute 1 (after warm-up) to the end.",
            "",
            "| what | after 1 min | at the end | growth |",
            "|---|---|---|---|",
            f"| gateway RSS (MB) | {first[1]:.1f} | {last[1]:.1f} | {grew(first[1], last[1]):+.1f}% |",
            f"| monitor RSS (MB) | {first[2]:.1f} | {last[2]:.1f} | {grew(first[2], last[2]):+.1f}% |",
            f"| Redis used memory (MB) | {first[3]:.1f} | {last[3]:.1f} | {grew(first[3], last[3]):+.1f}% |",
            f"| history entries not yet written (all streams) | {first[4]} | {last[4]} | peak {soak['peak_backlog']} |",
            "",
            f"{r['sent']} heartbeats sent ({r['requests_per_second']:.0f}/s), {r['ok']} accepted, {r['transport_errors']} transport errors, "
            f"statuses {r['by_status']}; latency p50 {r['latency_ms']['p50']:.2f} ms, p99 {r['latency_ms']['p99']:.2f} ms, "
            f"max {r['latency_ms']['max']:.2f} ms. No growth (≤ 10% after warm-up): {check(steady)}.",
            "",
            f"The gateway's own handler time over the soak (`heartbeat_request_duration_seconds`, upper bound of the bucket): "
            f"p50 ≤ {soak['handler'][0.5]} ms, p99 ≤ {soak['handler'][0.99]} ms. What the load generator sees above that is the "
            "client, the kernel and HTTP parsing on a shared 2-core machine, not time in the handler.",
            "",
        ]
    lines += [
        "Profiles, what changed each number, and what limits the gateway: [performance.md](performance.md).",
        "",
    ]
    with open(args.output, "w") as out:
        out.write("\n".join(lines))
    print("\n".join(lines))
    saved = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
             "figures": {what: value for what, value, *_ in figures if value is not None}}
    if compare:
        saved["heartbeat_cluster_vs_single"] = median(cluster_vs_single)
        saved["cluster"] = {
            "primaries": primaries, "replicas": 0, "buckets": {str(p): node_buckets[p] for p in primaries},
            "heartbeat_cluster_vs_single_runs": cluster_vs_single,
            "single_runs": compare["single"], "cluster_runs": compare["cluster"],
            "monitor_single": monitor_result, "monitor_cluster": monitor_cluster,
        }
    json.dump(saved, open(args.results, "w"), indent=2, ensure_ascii=False)
    # the one-screen summary
    print("\nbench summary (medians; previous = the last run's docs/benchmarks.json)", file=sys.stderr)
    print(f"  {'what':42} {'value':>10} {'previous':>10}  {'target':22} met", file=sys.stderr)
    for what, value, target, ok, fmt in figures:
        shown = fmt.format(value) if value is not None else "-"
        before = fmt.format(previous[what]) if what in previous else "-"
        met = "" if ok is None or value is None else ("yes" if ok(value) else "NO")
        print(f"  {what:42} {shown:>10} {before:>10}  {target:22} {met}", file=sys.stderr)
finally:
    stop_all()
