#!/usr/bin/env python3
"""A real Redis Cluster on loopback (redis-server 7.0 from Debian), for tests: a library and a CLI.

    scripts/redis_cluster.py start  [--run-dir .run/cluster] [--port 7301] [--primaries 3] [--replicas 1]
    scripts/redis_cluster.py status [--run-dir DIR] [--port P] [--primaries N] [--replicas N]
    scripts/redis_cluster.py stop   [--run-dir DIR] [--port P] [--primaries N] [--replicas N]
    scripts/redis_cluster.py selftest [--run-dir .run/cluster-selftest] [--port 7321]

`start` launches primaries × (1 + replicas) redis-server processes on ports port, port+1, … (each
also listens on its port + 10000, the cluster bus; both must be free), builds the cluster with
`redis-cli --cluster create … --cluster-replicas N --cluster-yes`, waits until it is settled (every
node: cluster_state:ok, all 16384 slots assigned, every node known; every view agrees on the slot
map; every primary has its replicas, each with master_link_status:up) and prints the seed-node
string for REDIS_CLUSTER_NODES. The processes outlive the CLI (own session); `stop` ends them from
the pid files (only a redis-server whose working dir is the node's dir), SIGTERM then SIGKILL,
and removes nothing but the pid files: logs (<run dir>/<port>/redis.log) stay. `start` always
builds a fresh cluster (it deletes the nodes' nodes.conf and dumps, not their logs) and refuses
while nodes of the run dir still run. A lock (<run dir>/cluster.lock) keeps two processes from
using one run dir at once; a test using the library holds it for its whole run.
`selftest` starts a cluster, checks keyslot() against CLUSTER KEYSLOT, writes keys with
`redis-cli -c`, SIGKILLs a primary and measures the failover, restarts it (it rejoins as a replica),
migrates a slot with keys (paused half way, reading a key through ASK), reshards with redis-cli, and
stops, leaving nothing running.

Node settings: bind 127.0.0.1, cluster-enabled yes, cluster-config-file nodes.conf,
cluster-node-timeout (1500 ms: a killed primary's replica takes over in ~2-4 s), appendonly no,
save "", daemonize no, hash-max-listpack-value 1024 (as deploy/redis.conf), and
cluster-require-full-coverage no by default, so a dead primary takes down only its own slots
(`--full-coverage`: Redis's default, where every node refuses every command until the failover).

Library: RedisCluster(run_dir, base_port, primaries=3, replicas=1, node_timeout_ms=1500).start(),
.seed_nodes(), .nodes(), .primary_of_slot(slot), keyslot(key), bucket_slot(b), .kill(node),
.restart(node), .wait_failover(killed_primary_id, timeout), .migrate_slot(slot, to_node_id,
batch, pause), .reshard(slots, to_node_id), .call(port, *command) (RESP, raises RedisError),
.call_key(key, *command) (routed: MOVED/ASK/TRYAGAIN followed), .cli(port, *args) (redis-cli),
.stop(). A `node` argument may be a port, a node id or a NodeInfo.
"""
import argparse
import dataclasses
import fcntl
import os
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import HarnessError, pid_alive, port_free, read_pid, wait_until  # noqa: E402

SLOTS = 16384
TAG = "HEARTBEAT_CLUSTER_DIR"
HOST = "127.0.0.1"


class ClusterError(HarnessError):
    """The cluster did not start, settle or do what was asked."""


class RedisError(Exception):
    """An error reply (`-ERR …`, `-MOVED …`, …)."""

    @property
    def kind(self):
        return str(self).split(" ", 1)[0]


# ---------------------------------------------------------------- slots

def _crc16_table():
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


_CRC16 = _crc16_table()


def crc16(data):
    """CRC16-XMODEM (polynomial 0x1021, initial 0), the one Redis Cluster uses."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC16[((crc >> 8) ^ byte) & 0xFF]
    return crc


def keyslot(key):
    """The cluster slot of a key: CRC16 of the hash tag (the part between the first `{` and the
    first `}` after it, when not empty), else of the whole key, mod 16384."""
    data = key.encode() if isinstance(key, str) else bytes(key)
    start = data.find(b"{")
    if start >= 0:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1:end]
    return crc16(data) % SLOTS


def bucket_slot(bucket):
    """The slot of every key of a heartbeat bucket (hash tag `{b}`)."""
    return keyslot(f"hb:{{{bucket}}}:online")


# ---------------------------------------------------------------- RESP

class Connection:
    """A minimal RESP2 client for one node (enough for cluster administration and tests)."""

    def __init__(self, port, host=HOST, timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.file = self.sock.makefile("rb")

    def close(self):
        try:
            self.file.close()
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, *command):
        out = [b"*%d\r\n" % len(command)]
        for arg in command:
            data = arg if isinstance(arg, bytes) else str(arg).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self.sock.sendall(b"".join(out))

    def read(self):
        """The next reply; an error reply is returned as a RedisError (not raised)."""
        line = self.file.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("connection closed by the server")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RedisError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.file.read(n + 2)
            return data[:-2].decode(errors="surrogateescape")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise ConnectionError(f"unexpected reply line {line[:60]!r}")

    def call(self, *command):
        self.send(*command)
        reply = self.read()
        if isinstance(reply, RedisError):
            raise reply
        return reply


def call(port, *command, timeout=5.0):
    """One command on one node; raises RedisError for an error reply, OSError when the node is down."""
    with Connection(port, timeout=timeout) as conn:
        return conn.call(*command)


def info_fields(text):
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#"))


# ---------------------------------------------------------------- topology

@dataclasses.dataclass
class NodeInfo:
    """One line of CLUSTER NODES."""
    id: str
    host: str
    port: int
    flags: frozenset
    master_id: str  # None for a primary
    epoch: int
    link: str
    slots: list  # [(first, last)], inclusive
    migrating: dict  # slot -> node id
    importing: dict  # slot -> node id

    @property
    def role(self):
        return "master" if "master" in self.flags else "slave"

    @property
    def failed(self):
        return "fail" in self.flags or "fail?" in self.flags or "noaddr" in self.flags

    @property
    def slot_count(self):
        return sum(b - a + 1 for a, b in self.slots)

    def owns(self, slot):
        return any(a <= slot <= b for a, b in self.slots)

    def ranges(self, limit=4):
        text = [f"{a}-{b}" if a != b else str(a) for a, b in self.slots]
        return ",".join(text[:limit]) + (f",… ({len(text)} ranges)" if len(text) > limit else "")


def parse_cluster_nodes(text):
    nodes = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        address = parts[1].split(",")[0]  # ip:port@cport[,hostname]
        hostport = address.split("@")[0]
        host, _, port = hostport.rpartition(":")
        slots, migrating, importing = [], {}, {}
        for item in parts[8:]:
            if item.startswith("["):
                slot, arrow, other = item.strip("[]").partition("->-") if "->-" in item else item.strip("[]").partition("-<-")
                (migrating if arrow == "->-" else importing)[int(slot)] = other
            elif "-" in item:
                a, b = item.split("-")
                slots.append((int(a), int(b)))
            else:
                slots.append((int(item), int(item)))
        nodes.append(NodeInfo(id=parts[0], host=host, port=int(port) if port.isdigit() else 0,
                              flags=frozenset(parts[2].split(",")), master_id=None if parts[3] == "-" else parts[3],
                              epoch=int(parts[6]), link=parts[7], slots=slots, migrating=migrating, importing=importing))
    return nodes


# ---------------------------------------------------------------- the cluster

class RedisCluster:
    def __init__(self, run_dir, base_port, primaries=3, replicas=1, node_timeout_ms=1500, require_full_coverage=False, log=None):
        self.run_dir = os.path.abspath(run_dir)
        self.base_port = int(base_port)
        self.primaries, self.replicas = int(primaries), int(replicas)
        self.node_timeout_ms = int(node_timeout_ms)
        self.require_full_coverage = require_full_coverage
        self.ports = [self.base_port + i for i in range(self.primaries * (1 + self.replicas))]
        self.popens = {}          # port -> Popen (this process's children)
        self.killed_at = {}       # node id -> (time of the SIGKILL, former replica ids)
        self.log = log or (lambda message: print(f"redis_cluster: {message}", flush=True))
        self._lock_file = None
        if self.primaries < 3:
            raise ClusterError("a Redis Cluster needs at least 3 primaries")
        if self.ports[-1] + 10000 > 65535:
            raise ClusterError(f"ports {self.ports[0]}-{self.ports[-1]}: the cluster bus (port + 10000) must stay below 65536")

    # ------------------------------------------------------------ files and processes

    def node_dir(self, port):
        return os.path.join(self.run_dir, str(port))

    def log_path(self, port):
        return os.path.join(self.node_dir(port), "redis.log")

    def pid_path(self, port):
        return os.path.join(self.node_dir(port), "redis.pid")

    def pid(self, port):
        """The live redis-server of this run dir on that port, or None."""
        popen = self.popens.get(port)
        if popen is not None and popen.poll() is None:
            return popen.pid
        pid = read_pid(self.pid_path(port))
        if pid and pid_alive(pid) and self._ours(pid, port):
            return pid
        return None

    def _ours(self, pid, port):
        """A redis-server running in this node's dir. (Not an environment tag: redis-server writes its
        process title over the area /proc/PID/environ shows.)"""
        try:
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
            return comm == "redis-server" and os.readlink(f"/proc/{pid}/cwd") == self.node_dir(port)
        except OSError:
            return False

    def alive(self, port):
        return self.pid(port) is not None

    def lock(self):
        """Holds <run dir>/cluster.lock until the process exits (or unlock()); raises if another process holds it."""
        if self._lock_file is not None:
            return
        os.makedirs(self.run_dir, exist_ok=True)
        f = open(os.path.join(self.run_dir, "cluster.lock"), "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "?"
            f.close()
            raise ClusterError(f"another process (pid {holder}) is using {self.run_dir}: wait for it, or use another --run-dir and --port")
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._lock_file = f

    def unlock(self):
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def _config(self, port):
        d = self.node_dir(port)
        return "\n".join([
            f"port {port}",
            f"bind {HOST}",
            "cluster-enabled yes",
            "cluster-config-file nodes.conf",
            f"cluster-node-timeout {self.node_timeout_ms}",
            f"cluster-require-full-coverage {'yes' if self.require_full_coverage else 'no'}",
            "appendonly no",
            'save ""',
            "daemonize no",
            f"logfile {os.path.join(d, 'redis.log')}",
            f"dir {d}",
            "hash-max-listpack-value 1024",
            "",
        ])

    def _launch(self, port):
        d = self.node_dir(port)
        with open(self.log_path(port), "a") as f:
            f.write(f"==== redis_cluster.py: starting redis-server on {HOST}:{port} at {time.strftime('%H:%M:%S')}\n")
        err = open(os.path.join(d, "redis.stderr"), "a")
        popen = subprocess.Popen(["redis-server", os.path.join(d, "redis.conf")], cwd=d, stdin=subprocess.DEVNULL,
                                 stdout=err, stderr=subprocess.STDOUT, start_new_session=True,
                                 env=dict(os.environ, **{TAG: self.run_dir}))  # informative only (see _ours)
        err.close()
        self.popens[port] = popen
        with open(self.pid_path(port), "w") as f:
            f.write(f"{popen.pid}\n")
        return popen

    def _wait_ping(self, port, timeout=10):
        def ping():
            popen = self.popens.get(port)
            if popen is not None and popen.poll() is not None:
                raise ClusterError(f"redis-server on {port} exited ({popen.returncode}) at start; see {self.log_path(port)} "
                                   f"and {os.path.join(self.node_dir(port), 'redis.stderr')}:\n{self.tail(port)}")
            try:
                return call(port, "PING", timeout=1) == "PONG"
            except (OSError, RedisError):
                return False
        if not wait_until(ping, timeout, poll=0.05):
            raise ClusterError(f"redis-server on {port} does not answer PING within {timeout} s; see {self.log_path(port)}")

    def tail(self, port, n=15):
        try:
            with open(self.log_path(port), errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def check_ports(self):
        busy = [p for port in self.ports for p in (port, port + 10000) if not port_free(p)]
        if busy:
            raise ClusterError(f"ports in use on {HOST}: {', '.join(map(str, busy))} (a node needs its port and port + 10000 free); "
                               "stop what holds them or choose another --port")

    # ------------------------------------------------------------ start / stop

    def start(self, timeout=60):
        """A fresh cluster; returns the seed-node string."""
        self.lock()
        running = [p for p in self.ports if self.alive(p)]
        if running:
            raise ClusterError(f"nodes of {self.run_dir} still run on ports {running}: stop them first (redis_cluster.py stop --run-dir {self.run_dir})")
        self.check_ports()
        try:
            return self._start(timeout)
        except BaseException:
            self.stop()  # only the nodes launched here: the ports were free and no node of the run dir ran
            raise

    def _start(self, timeout):
        t0 = time.time()
        for port in self.ports:
            d = self.node_dir(port)
            os.makedirs(d, exist_ok=True)
            for stale in ("nodes.conf", "dump.rdb", "temp-rewriteaof.aof"):
                try:
                    os.remove(os.path.join(d, stale))
                except OSError:
                    pass
            with open(os.path.join(d, "redis.conf"), "w") as f:
                f.write(self._config(port))
            self._launch(port)
        for port in self.ports:
            self._wait_ping(port)
        argv = ["redis-cli", "--cluster", "create", *[f"{HOST}:{p}" for p in self.ports],
                "--cluster-replicas", str(self.replicas), "--cluster-yes"]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        with open(os.path.join(self.run_dir, "cluster-create.log"), "w") as f:
            f.write(" ".join(argv) + "\n" + result.stdout + result.stderr)
        if result.returncode != 0 or "[OK] All 16384 slots covered" not in result.stdout:
            raise ClusterError(f"redis-cli --cluster create failed ({result.returncode}): {(result.stdout + result.stderr)[-1500:]}")
        self.wait_settled(timeout=max(1, timeout - (time.time() - t0)))
        self.log(f"cluster of {self.primaries} primaries × {self.replicas} replicas on {HOST}:{self.ports[0]}-{self.ports[-1]} "
                 f"settled in {time.time() - t0:.1f} s (run dir {self.run_dir})")
        return self.seed_nodes()

    def stop(self, timeout=10):
        """SIGTERM every node of the run dir (from this process's handles or the pid files), SIGKILL
        what is left after `timeout`; removes the pid files only. Returns the pids stopped."""
        pids = {}
        for port in self.ports:
            pid = self.pid(port)
            if pid:
                try:
                    os.kill(pid, signal.SIGTERM)
                    pids[port] = pid
                except ProcessLookupError:
                    pass

        def gone():
            for port, pid in pids.items():
                popen = self.popens.get(port)
                if popen is not None and popen.pid == pid:
                    if popen.poll() is None:
                        return False
                elif pid_alive(pid):
                    return False
            return True
        if not wait_until(gone, timeout, poll=0.05):
            for port, pid in pids.items():
                if pid_alive(pid) and self._ours(pid, port):
                    self.log(f"node {port} (pid {pid}) ignored SIGTERM for {timeout} s: SIGKILL")
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            wait_until(gone, 5, poll=0.05)
        for port in self.ports:
            popen = self.popens.pop(port, None)
            if popen is not None:
                try:
                    popen.wait(timeout=1)
                except subprocess.TimeoutExpired:
                    pass
            try:
                os.remove(self.pid_path(port))
            except OSError:
                pass
        return pids

    # ------------------------------------------------------------ commands

    def seed_nodes(self):
        """host:port of every node, comma-separated (REDIS_CLUSTER_NODES)."""
        return ",".join(f"{HOST}:{p}" for p in self.ports)

    def call(self, port, *command, timeout=5.0):
        return call(port, *command, timeout=timeout)

    def cli(self, port, *args, follow=False, timeout=30):
        """redis-cli -p PORT ARGS… (with -c when follow): its stdout; raises RedisError when redis-cli
        printed an error reply (it exits 0 for those)."""
        argv = ["redis-cli", "-h", HOST, "-p", str(port), *(["-c"] if follow else []), *map(str, args)]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        out = result.stdout.strip()
        first = out.split(" ", 1)[0]
        if result.returncode != 0 or first in ("ERR", "MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN", "WRONGTYPE", "NOSCRIPT", "BUSYKEY", "LOADING", "MASTERDOWN", "IOERR"):
            raise RedisError(out or result.stderr.strip() or f"redis-cli exited {result.returncode}")
        return out

    def call_key(self, key, *command, attempts=20):
        """A command on the primary of the key's slot, following MOVED (map refreshed), ASK (ASKING
        on the same connection) and TRYAGAIN (retried after 50 ms), as a cluster client does."""
        slot = keyslot(key)
        owner = self.primary_of_slot(slot)
        port = owner.port if owner else self.ports[0]
        asking = False
        last = None
        for _ in range(attempts):
            try:
                with Connection(port) as conn:
                    if asking:
                        conn.call("ASKING")
                    return conn.call(*command)
            except RedisError as error:
                last = error
                if error.kind in ("MOVED", "ASK"):
                    port = int(str(error).split()[2].rsplit(":", 1)[1])
                    asking = error.kind == "ASK"
                    continue
                if error.kind in ("TRYAGAIN", "CLUSTERDOWN"):
                    asking = False
                    time.sleep(0.05)
                    continue
                raise
            except OSError as error:
                last = error
                time.sleep(0.1)
                owner = self.primary_of_slot(slot)
                port = owner.port if owner else port
                asking = False
        raise ClusterError(f"{command[0]} {key}: no answer after {attempts} attempts (last: {last})")

    # ------------------------------------------------------------ topology

    def live_ports(self):
        return [p for p in self.ports if self.alive(p)]

    def nodes(self, port=None):
        """CLUSTER NODES as NodeInfo list, as the given node (default: the first live one that answers) sees it."""
        for p in ([port] if port else self.live_ports()):
            try:
                return parse_cluster_nodes(self.call(p, "CLUSTER", "NODES", timeout=2))
            except (OSError, RedisError) as error:
                if port:
                    raise ClusterError(f"CLUSTER NODES on {port}: {error}")
        raise ClusterError(f"no node of {self.run_dir} answers (ports {self.ports[0]}-{self.ports[-1]})")

    def node(self, which, view=None):
        """A NodeInfo from a port, a node id (or a unique prefix) or a NodeInfo."""
        view = view or self.nodes()
        if isinstance(which, NodeInfo):
            which = which.id
        for n in view:
            if (isinstance(which, int) and n.port == which) or (isinstance(which, str) and n.id.startswith(which)):
                return n
        raise ClusterError(f"no node {which} in the cluster")

    def primaries_now(self, view=None):
        return sorted((n for n in (view or self.nodes()) if n.role == "master" and not n.failed and n.slots), key=lambda n: n.port)

    def primary_of_slot(self, slot, view=None):
        for n in (view or self.nodes()):
            if n.role == "master" and not n.failed and n.owns(slot):
                return n
        return None

    def buckets_of(self, node, buckets=16, view=None):
        n = self.node(node, view)
        return [b for b in range(buckets) if n.owns(bucket_slot(b))]

    def cluster_info(self, port):
        return info_fields(self.call(port, "CLUSTER", "INFO", timeout=2))

    def settled(self):
        """None when every live node says cluster_state:ok with all slots served and all nodes known,
        all views agree on the slot map, no slot is migrating, and every primary has its replicas
        with master_link_status:up; else a string saying what is not so yet."""
        maps = {}
        live = self.live_ports()
        for port in live:
            try:
                info = self.cluster_info(port)
                view = parse_cluster_nodes(self.call(port, "CLUSTER", "NODES", timeout=2))
            except (OSError, RedisError) as error:
                return f"{port}: {error}"
            if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != str(SLOTS):
                return f"{port}: cluster_state {info.get('cluster_state')}, slots ok {info.get('cluster_slots_ok')}, pfail {info.get('cluster_slots_pfail')}, fail {info.get('cluster_slots_fail')}"
            if int(info.get("cluster_known_nodes", 0)) < len(self.ports):
                return f"{port}: knows {info.get('cluster_known_nodes')} of {len(self.ports)} nodes"
            if any(n.failed for n in view if n.port in live):
                return f"{port}: sees {[n.port for n in view if n.failed and n.port in live]} failing"
            if any(n.migrating or n.importing for n in view):
                return f"{port}: a slot is migrating"
            maps[port] = sorted((n.id, tuple(n.slots)) for n in view if n.role == "master" and n.slots)
        if len({tuple(m) for m in maps.values()}) > 1:
            return "the nodes do not agree on the slot map yet"
        view = self.nodes()
        covered = sum(n.slot_count for n in self.primaries_now(view))
        if covered != SLOTS:
            return f"{covered} slots covered"
        for primary in self.primaries_now(view):
            replicas = [n for n in view if n.master_id == primary.id and n.port in live and not n.failed]
            if len(replicas) < self.replicas:
                return f"primary {primary.port} has {len(replicas)} of {self.replicas} replicas"
            for r in replicas:
                try:
                    link = info_fields(self.call(r.port, "INFO", "replication", timeout=2)).get("master_link_status")
                except (OSError, RedisError) as error:
                    return f"replica {r.port}: {error}"
                if link != "up":
                    return f"replica {r.port} of {primary.port}: master_link_status {link}"
        return None

    def wait_settled(self, timeout=30):
        last = [None]

        def ok():
            last[0] = self.settled()
            return last[0] is None
        if not wait_until(ok, timeout, poll=0.1):
            raise ClusterError(f"the cluster did not settle within {timeout} s: {last[0]}")

    # ------------------------------------------------------------ faults

    def kill(self, node):
        """SIGKILL a node; remembers when (for wait_failover) and its replicas. Returns the NodeInfo."""
        view = self.nodes()
        n = self.node(node, view)
        pid = self.pid(n.port)
        if not pid:
            raise ClusterError(f"node {n.port} is not running")
        replicas = [r.id for r in view if r.master_id == n.id]
        os.kill(pid, signal.SIGKILL)
        at = time.time()
        self.killed_at[n.id] = (at, replicas)
        popen = self.popens.get(n.port)
        if popen is not None and popen.pid == pid:
            popen.wait(timeout=10)
        else:
            wait_until(lambda: not pid_alive(pid), 10, poll=0.02)
        return n

    def restart(self, node, wait=True, timeout=30):
        """Starts a killed node again on its port and dir (its nodes.conf keeps its id); a primary
        that was failed over rejoins as a replica of the promoted node. With wait, returns once the
        cluster is settled again (it has synced)."""
        n = node if isinstance(node, int) else self.node(node).port
        if self.alive(n):
            raise ClusterError(f"node {n} is running")
        self._launch(n)
        self._wait_ping(n)
        if wait:
            self.wait_settled(timeout)
        return n

    def wait_failover(self, killed_primary_id, timeout=30):
        """Seconds from the kill (or from now, when it was not killed through kill()) until a former
        replica of it is a primary serving its slots and every surviving node says cluster_state:ok
        and sees all 16384 slots served; None on timeout."""
        at, replicas = self.killed_at.get(killed_primary_id, (time.time(), None))

        def done():
            survivors = [p for p in self.live_ports()]
            for port in survivors:
                try:
                    info = self.cluster_info(port)
                    view = parse_cluster_nodes(self.call(port, "CLUSTER", "NODES", timeout=1))
                except (OSError, RedisError):
                    return False
                if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != str(SLOTS):
                    return False
                promoted = [n for n in view if n.role == "master" and not n.failed and n.slots
                            and (n.id in replicas if replicas is not None else True) and n.id != killed_primary_id]
                if replicas is not None and not promoted:
                    return False
                if any(n.id == killed_primary_id and n.slots for n in view):
                    return False
            return True
        if wait_until(done, timeout, poll=0.02):
            return time.time() - at
        return None

    # ------------------------------------------------------------ resharding

    def migrate_slot(self, slot, to_node_id, batch=100, pause=0.0, on_paused=None, migrate_timeout_ms=5000):
        """Moves one slot with its keys to another primary, as redis-cli does it but step by step:
        SETSLOT IMPORTING on the target, MIGRATING on the source, GETKEYSINSLOT + MIGRATE … KEYS in
        batches, then SETSLOT NODE on the target, the source and every other primary. With pause,
        it sleeps that long after the first batch (on_paused() called first), while the slot is
        half moved: commands on moved keys are answered ASK by the source, multi-key commands over
        moved and unmoved (or missing) keys TRYAGAIN. Returns figures."""
        view = self.nodes()
        src = self.primary_of_slot(slot, view)
        dst = self.node(to_node_id, view)
        if src is None:
            raise ClusterError(f"slot {slot} has no live primary")
        if dst.role != "master" or dst.failed:
            raise ClusterError(f"target {dst.port} is not a live primary")
        figures = {"slot": slot, "from": src.port, "to": dst.port, "keys": 0, "batches": 0, "paused_s": 0.0}
        if src.id == dst.id:
            figures["seconds"] = 0.0
            return figures
        t0 = time.time()
        self.call(dst.port, "CLUSTER", "SETSLOT", slot, "IMPORTING", src.id)
        self.call(src.port, "CLUSTER", "SETSLOT", slot, "MIGRATING", dst.id)
        paused = False
        while True:
            keys = self.call(src.port, "CLUSTER", "GETKEYSINSLOT", slot, batch)
            if not keys:
                break
            try:
                self.call(src.port, "MIGRATE", HOST, dst.port, "", 0, migrate_timeout_ms, "KEYS", *keys,
                          timeout=migrate_timeout_ms / 1000 + 5)
            except RedisError as error:
                raise ClusterError(f"MIGRATE of slot {slot} {src.port}->{dst.port} failed: {error} (the slot stays open: "
                                   f"redis-cli --cluster fix {HOST}:{src.port})")
            figures["keys"] += len(keys)
            figures["batches"] += 1
            if pause and not paused:
                paused = True
                if on_paused:
                    on_paused(figures)
                p0 = time.time()
                time.sleep(pause)
                figures["paused_s"] = round(time.time() - p0, 3)
        if pause and not paused:  # no key in the slot: the pause still holds it open
            time.sleep(pause)
            figures["paused_s"] = pause
        others = [n for n in self.primaries_now(view) if n.id not in (src.id, dst.id)]
        for n in (dst, src, *others):
            try:
                self.call(n.port, "CLUSTER", "SETSLOT", slot, "NODE", dst.id)
            except OSError:
                if n in (dst, src):
                    raise
        figures["seconds"] = round(time.time() - t0, 3)
        return figures

    def reshard(self, slots, to_node_id, from_node_id=None, timeout=120):
        """Moves slots to a primary: a list of slots one by one with migrate_slot(), or a number of
        slots taken from from_node_id (default: the primary with the most slots other than the
        target) with `redis-cli --cluster reshard … --cluster-yes`. Returns
        {"moved": {slot: (from port, to port)}, "seconds": s, "output": redis-cli's output tail}."""
        t0 = time.time()
        before = {s: n.port for n in self.primaries_now() for a, b in n.slots for s in range(a, b + 1)}
        if isinstance(slots, (list, tuple, set)):
            for slot in slots:
                self.migrate_slot(slot, to_node_id)
            output = ""
        else:
            view = self.nodes()
            dst = self.node(to_node_id, view)
            src = self.node(from_node_id, view) if from_node_id else max(
                (n for n in self.primaries_now(view) if n.id != dst.id), key=lambda n: n.slot_count)
            argv = ["redis-cli", "--cluster", "reshard", f"{HOST}:{dst.port}", "--cluster-from", src.id, "--cluster-to", dst.id,
                    "--cluster-slots", str(int(slots)), "--cluster-yes"]
            result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
            output = result.stdout + result.stderr
            with open(os.path.join(self.run_dir, "cluster-reshard.log"), "a") as f:
                f.write(f"==== {time.strftime('%H:%M:%S')} {' '.join(argv)}\n{output}\n")
            if result.returncode != 0 or "[ERR]" in output:
                raise ClusterError(f"redis-cli --cluster reshard failed ({result.returncode}): {output[-1500:]}")
        self.wait_settled(30)  # every view updated (the other nodes learn the new owners by gossip)
        after = {s: n.port for n in self.primaries_now() for a, b in n.slots for s in range(a, b + 1)}
        moved = {s: (before.get(s), after.get(s)) for s in after if before.get(s) != after.get(s)}
        return {"moved": moved, "seconds": round(time.time() - t0, 3), "output": output[-2000:]}

    def status_table(self):
        try:
            view = self.nodes()
        except ClusterError:
            view = []
        by_port = {n.port: n for n in view}
        ids = {n.id: n.port for n in view}
        lines = [f"{'port':>5}  {'pid':>7}  {'id':8}  {'role':6}  {'of':>5}  {'slots':>5}  {'keys':>6}  flags / ranges"]
        for port in self.ports:
            pid = self.pid(port)
            n = by_port.get(port)
            keys = "-"
            if pid:
                try:
                    keys = str(self.call(port, "DBSIZE", timeout=1))
                except (OSError, RedisError):
                    keys = "?"
            if n is None:
                lines.append(f"{port:>5}  {pid or '-':>7}  {'?':8}  {'?':6}  {'':>5}  {'':>5}  {keys:>6}  {'running' if pid else 'stopped'}")
                continue
            flags = ",".join(sorted(f for f in n.flags if f not in ("master", "slave", "myself")))
            lines.append(f"{port:>5}  {pid or '-':>7}  {n.id[:8]:8}  {n.role:6}  {ids.get(n.master_id, '') if n.master_id else '':>5}  "
                         f"{n.slot_count:>5}  {keys:>6}  {flags or '-'} {n.ranges()}")
        return "\n".join(lines)


# ---------------------------------------------------------------- self-test

def selftest(cluster):
    """What the module docstring lists; raises on the first failure."""
    say = cluster.log
    cluster.stop()
    seeds = cluster.start()
    say(f"seeds {seeds}")
    port = cluster.ports[0]
    samples = ["foo", "bar", "hb:{3}:online", "hb:{15}:dev:abc", "{user1000}.following", "foo{}{bar}", "foo{{bar}}zap", "{}", "a{b", "é{ü}x",
               *[f"hb:{{{b}}}:online" for b in range(16)]]
    for key in samples:
        theirs = cluster.call(port, "CLUSTER", "KEYSLOT", key)
        if theirs != keyslot(key):
            raise ClusterError(f"keyslot({key!r}) = {keyslot(key)}, CLUSTER KEYSLOT says {theirs}")
    say(f"keyslot() agrees with CLUSTER KEYSLOT on {len(samples)} keys; bucket slots {[bucket_slot(b) for b in range(16)]}")
    for i in range(200):
        cluster.cli(port, "SET", f"k{i}", str(i), follow=True)
    for b in range(16):
        for i in range(20):
            cluster.cli(port, "HSET", f"hb:{{{b}}}:dev:{i}", "n", str(i), follow=True)
    view = cluster.nodes()
    say("written with redis-cli -c: " + ", ".join(f"{n.port}:{cluster.call(n.port, 'DBSIZE')} keys" for n in cluster.primaries_now(view)))
    victim = max(cluster.primaries_now(view), key=lambda n: len(cluster.buckets_of(n, view=view)))
    say(f"SIGKILL primary {victim.port} ({victim.id[:8]}, buckets {cluster.buckets_of(victim, view=view)})")
    cluster.kill(victim)
    took = cluster.wait_failover(victim.id, timeout=30)
    if took is None:
        raise ClusterError("no failover within 30 s")
    promoted = cluster.primary_of_slot(victim.slots[0][0])
    say(f"failover: {promoted.port} serves its slots {took:.2f} s after the kill")
    lost = [i for i in range(200) if cluster.call_key(f"k{i}", "GET", f"k{i}") != str(i)]
    if lost:
        raise ClusterError(f"keys lost in the failover: {lost[:10]}")
    t0 = time.time()
    cluster.restart(victim.port)
    back = cluster.node(victim.port)
    if back.role != "slave" or back.master_id != promoted.id:
        raise ClusterError(f"restarted {victim.port} is {back.role} of {back.master_id}, expected a replica of {promoted.id}")
    say(f"restarted {victim.port}: replica of {promoted.port}, cluster settled after {time.time() - t0:.2f} s")
    b = 3
    slot = bucket_slot(b)
    src = cluster.primary_of_slot(slot)
    dst = next(n for n in cluster.primaries_now() if n.id != src.id)
    seen = {}

    def half_way(fig):
        # a key already on the target: the source answers ASK, the target serves it after ASKING
        for i in range(20):
            key = f"hb:{{{b}}}:dev:{i}"
            try:
                cluster.call(src.port, "HGET", key, "n")
            except RedisError as error:
                if error.kind == "ASK":
                    seen["ask"] = str(error)
                    seen["value"] = cluster.call_key(key, "HGET", key, "n")
                    seen["key"] = key
                    return
    fig = cluster.migrate_slot(slot, dst.id, batch=5, pause=0.3, on_paused=half_way)
    if "ask" not in seen or seen["value"] != seen["key"].rsplit(":", 1)[1]:
        raise ClusterError(f"no ASK redirect seen half way through the migration ({seen})")
    if cluster.primary_of_slot(slot).id != dst.id or cluster.call(dst.port, "CLUSTER", "COUNTKEYSINSLOT", slot) != 20:
        raise ClusterError(f"slot {slot} not on {dst.port} with its 20 keys after the migration")
    say(f"migrated slot {slot} (bucket {b}) {fig['from']}->{fig['to']}: {fig['keys']} keys in {fig['batches']} batches, "
        f"{fig['seconds']} s; half way the source answered '{seen['ask']}'")
    cluster.wait_settled(10)
    r = cluster.reshard(50, src.id, from_node_id=dst.id)
    say(f"redis-cli --cluster reshard: {len(r['moved'])} slots {dst.port}->{src.port} in {r['seconds']} s")
    lost = [i for i in range(200) if cluster.call_key(f"k{i}", "GET", f"k{i}") != str(i)]
    lost += [(b, i) for b in range(16) for i in range(20) if cluster.call_key(f"hb:{{{b}}}:dev:{i}", "HGET", f"hb:{{{b}}}:dev:{i}", "n") != str(i)]
    if lost:
        raise ClusterError(f"keys lost after the resharding: {lost[:10]}")
    cluster.wait_settled(10)
    say("all keys readable after failover, migration and reshard")


# ---------------------------------------------------------------- CLI

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["start", "stop", "status", "selftest"])
    parser.add_argument("--run-dir", help="nodes' dirs, logs, pid files (default .run/cluster; selftest .run/cluster-selftest)")
    parser.add_argument("--port", type=int, help="first node's port; the others follow (default 7301; selftest 7321)")
    parser.add_argument("--primaries", type=int, default=3)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--node-timeout", type=int, default=1500, help="cluster-node-timeout, ms (default 1500)")
    parser.add_argument("--full-coverage", action="store_true", help="cluster-require-full-coverage yes (Redis's default)")
    args = parser.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    run_dir = args.run_dir or os.path.join(root, ".run", "cluster-selftest" if args.action == "selftest" else "cluster")
    port = args.port or (7321 if args.action == "selftest" else 7301)
    cluster = RedisCluster(run_dir, port, args.primaries, args.replicas, args.node_timeout, args.full_coverage)
    try:
        if args.action == "start":
            print(cluster.start())
        elif args.action == "stop":
            cluster.lock()
            pids = cluster.stop()
            print(f"redis_cluster: stopped {len(pids)} nodes" + (f" ({', '.join(f'{p}:{pid}' for p, pid in pids.items())})" if pids else ""))
        elif args.action == "status":
            print(cluster.status_table())
            running = len(cluster.live_ports())
            problem = cluster.settled() if running else "not running"
            print(f"{running}/{len(cluster.ports)} nodes running; " + ("settled (cluster_state:ok)" if problem is None else problem))
            if running:
                print(f"REDIS_CLUSTER_NODES={cluster.seed_nodes()}")
            return 0 if running == len(cluster.ports) and problem is None else 3
        else:
            cluster.lock()
            try:
                selftest(cluster)
                print("redis_cluster: selftest PASSED")
            finally:
                cluster.stop()
                left = [p for p in cluster.ports if cluster.alive(p)]
                if left:
                    print(f"redis_cluster: nodes still running on {left}")
        return 0
    except (HarnessError, RedisError, OSError) as error:
        print(f"redis_cluster: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
