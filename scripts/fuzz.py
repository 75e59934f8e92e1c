#!/usr/bin/env python3
"""Fuzz both HTTP APIs from docs/openapi.yaml with schemathesis 4, against real services.

Starts private Redis, PostgreSQL and the Kafka mock (scripts/services.sh, run directory
.run/fuzz, Redis 6397, PostgreSQL 5447, a fresh database each run), one gateway and one monitor
on free loopback ports (HEARTBEAT_MIN_INTERVAL_SECONDS=0), registers a device through the ops API
and sends it one heartbeat, then runs `schemathesis run` once per API (tag `gateway`, then tag
`ops`) with every check. Stops everything it started on the way out, whatever happens (one run
at a time: a lock in the run directory).

The device reaches schemathesis through a config file written into the run directory:
`auth.openapi` gives each bearer scheme its token (admin token, device token) and an
`[[operations]]` entry pins the path `id` of every /api/v1/devices/{id}… operation to the device,
so heartbeats are recorded in Redis and the ops API shows real history, events and commands
(the ops run, which rotates the token, comes second). scripts/fuzz_hooks.py supplies what the
document states but OpenAPI cannot express: the heartbeat body's `device_id` equal to the path
id, uptime's `from` before `to`, and `page-cursor` values (cursors the API could have returned).

Usage:
  python3 scripts/fuzz.py [--short] [--bin DIR] [-n N] [--seed N] [--api gateway|ops|both]

  --short   a quick run for `make test`: -n 25, fixed seed (~35 s with setup)
  default   the long run for `make fuzz`: -n 1000, random seed (~2.5 min)

Exit status: 0 clean; 1 a check failed, schemathesis reported an error or the services were
disturbed; 2 setup failed. Reports (JSON, NDJSON, JUnit) go to .run/fuzz/report-<api>/.
Needs: `pip install schemathesis` (4.x), the services' Debian packages (scripts/install-deps.sh)
and built binaries (`swift build`).
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from harness import free_port

REPO = Path(__file__).resolve().parent.parent
RUN_DIR = REPO / ".run" / "fuzz"
REDIS_PORT = 6397
PG_PORT = 5447
DATABASE = "heartbeat_fuzz"

SHORT_EXAMPLES = 25
LONG_EXAMPLES = 1000
SHORT_SEED = 20260202
# Wall-clock bound of one schemathesis run (one API).
SHORT_TIMEOUT = 150
LONG_TIMEOUT = 1800


class SetupError(Exception):
    pass


def take_lock(wait: float) -> object:
    """One fuzz run at a time: they share the run directory and the service ports."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    handle = open(RUN_DIR / "fuzz.lock", "a+")
    deadline = time.monotonic() + wait
    announced = False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            return handle
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise SetupError(f"another fuzz run still holds {RUN_DIR / 'fuzz.lock'} after {wait:.0f} s")
            if not announced:
                handle.seek(0)
                log(f"another fuzz run (pid {handle.read().strip() or '?'}) uses {RUN_DIR.relative_to(REPO)}; waiting for it")
                announced = True
            time.sleep(1)


def log(message: str) -> None:
    print(f"fuzz: {message}", flush=True)


def http(method: str, url: str, token: str | None = None, body: object | None = None, timeout: float = 5) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class Stack:
    """What this run starts, so that `stop` ends exactly that."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.env = dict(os.environ, HEARTBEAT_RUN_DIR=str(RUN_DIR), REDIS_PORT=str(REDIS_PORT), PG_PORT=str(PG_PORT))
        self.services_started = False
        self.processes: list[tuple[str, subprocess.Popen]] = []
        self.admin_token = secrets.token_urlsafe(24)
        self.gateway_url = ""
        self.monitor_url = ""

    def services(self, action: str) -> str:
        result = subprocess.run([str(REPO / "scripts/services.sh"), action], cwd=REPO, env=self.env,
                                capture_output=True, text=True, timeout=120)
        if result.returncode != 0 and action != "status":
            raise SetupError(f"scripts/services.sh {action} failed:\n{result.stdout}{result.stderr}")
        return result.stdout

    PIDS = RUN_DIR / "fuzz.pids"

    def stop_leftovers(self) -> None:
        """Gateway and monitor processes an earlier run of this script left behind (it was SIGKILLed)."""
        try:
            pids = [int(p) for p in self.PIDS.read_text().split()]
        except (OSError, ValueError):
            return
        for pid in pids:
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            except OSError:
                continue
            if Path(command).name in ("heartbeat-ingest", "heartbeat-monitor"):
                log(f"stopping {Path(command).name} (pid {pid}) left by an earlier fuzz run")
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        self.PIDS.unlink(missing_ok=True)

    def start(self) -> None:
        self.stop_leftovers()
        for name in ("heartbeat-ingest", "heartbeat-monitor"):
            if not os.access(self.bin_dir / name, os.X_OK):
                raise SetupError(f"{self.bin_dir / name} not found: build first (swift build) or pass --bin DIR")
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        self.services_started = True  # from here on, stop them even if start fails half-way
        out = self.services("start")
        sys.stdout.write("".join(f"fuzz: {line}\n" for line in out.splitlines()))
        urls = {}
        for line in self.services("env").splitlines():
            if line.startswith("export "):
                key, _, value = line[len("export "):].partition("=")
                urls[key] = value
        for key in ("REDIS_URL", "POSTGRES_URL", "KAFKA_BROKERS"):
            if key not in urls:
                raise SetupError(f"scripts/services.sh env gave no {key}")
        self.fresh_state()
        self.redis_run_id = self.redis_info_run_id()
        postgres_url = f"postgres://heartbeat@127.0.0.1:{PG_PORT}/{DATABASE}"

        admin_port, http_port = free_port(), free_port()
        common = {"REDIS_URL": urls["REDIS_URL"], "LOG_LEVEL": "warning", "LOG_FORMAT": "text"}
        self.spawn("heartbeat-monitor", {
            **common, "POSTGRES_URL": postgres_url, "KAFKA_BROKERS": urls["KAFKA_BROKERS"],
            "ADMIN_HOST": "127.0.0.1", "ADMIN_PORT": str(admin_port), "ADMIN_TOKEN": self.admin_token,
        })
        self.monitor_url = f"http://127.0.0.1:{admin_port}"
        self.wait_ready("heartbeat-monitor", self.monitor_url)
        self.spawn("heartbeat-ingest", {
            **common, "HTTP_HOST": "127.0.0.1", "HTTP_PORT": str(http_port), "HEARTBEAT_MIN_INTERVAL_SECONDS": "0",
        })
        self.gateway_url = f"http://127.0.0.1:{http_port}"
        self.wait_ready("heartbeat-ingest", self.gateway_url)

    def fresh_state(self) -> None:
        """An empty Redis and a new database, so every run starts from the same state."""
        redis_cli = shutil.which("redis-cli") or "redis-cli"
        subprocess.run([redis_cli, "-h", "127.0.0.1", "-p", str(REDIS_PORT), "FLUSHALL"], check=True,
                       capture_output=True, timeout=10)
        psql = shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql"
        for sql in (f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)", f"CREATE DATABASE {DATABASE} OWNER heartbeat"):
            result = subprocess.run([psql, "-X", "-q", "-h", "127.0.0.1", "-p", str(PG_PORT), "-U", "postgres", "-d", "postgres",
                                     "-v", "ON_ERROR_STOP=1", "-c", sql], capture_output=True, text=True, timeout=30,
                                    env=dict(self.env, PGCONNECT_TIMEOUT="5"))
            if result.returncode != 0:
                raise SetupError(f"psql: {sql}: {result.stderr.strip()}")

    def redis_info_run_id(self) -> str:
        redis_cli = shutil.which("redis-cli") or "redis-cli"
        out = subprocess.run([redis_cli, "-h", "127.0.0.1", "-p", str(REDIS_PORT), "INFO", "server"],
                             capture_output=True, text=True, timeout=10).stdout
        return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("run_id:")), "")

    def interference(self) -> str | None:
        """Why the services are no longer the ones this run started, if they are not."""
        try:
            run_id = self.redis_info_run_id()
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"redis-cli failed: {error}"
        if run_id != self.redis_run_id:
            return f"Redis on 127.0.0.1:{REDIS_PORT} was stopped or restarted by something else (run_id {self.redis_run_id or '?'} → {run_id or 'none'})"
        for name, process in self.processes:
            if process.poll() is not None:
                return f"{name} exited with {process.returncode}:\n{tail(RUN_DIR / f'{name}.log')}"
        return None

    def spawn(self, name: str, env: dict[str, str]) -> None:
        log_path = RUN_DIR / f"{name}.log"
        with open(log_path, "wb") as out:
            process = subprocess.Popen([str(self.bin_dir / name)], env={**os.environ, **env}, stdout=out,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.processes.append((name, process))
        with open(self.PIDS, "a") as pids:
            pids.write(f"{process.pid}\n")
        log(f"{name} started (pid {process.pid}, log {log_path.relative_to(REPO)})")

    def wait_ready(self, name: str, url: str, timeout: float = 60) -> None:
        process = dict(self.processes)[name]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SetupError(f"{name} exited with {process.returncode}:\n{tail(RUN_DIR / f'{name}.log')}")
            try:
                if http("GET", f"{url}/readyz", timeout=2)[0] == 200:
                    log(f"{name} ready on {url}")
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise SetupError(f"{name} not ready on {url}/readyz within {timeout:.0f} s:\n{tail(RUN_DIR / f'{name}.log')}")

    def register(self, name: str) -> tuple[str, str]:
        status, body = http("POST", f"{self.monitor_url}/api/v1/devices", self.admin_token, {"name": name})
        if status != 201:
            raise SetupError(f"registering a device: {status} {body[:300]!r}")
        reply = json.loads(body)
        return reply["id"], reply["token"]

    def ops(self, method: str, path: str, body: object | None = None, expect: int = 200) -> dict:
        status, reply = http(method, f"{self.monitor_url}{path}", self.admin_token, body)
        if status != expect:
            raise SetupError(f"{method} {path}: {status} {reply[:300]!r}")
        return json.loads(reply)

    def wait_for_history(self, device_id: str, timeout: float = 20) -> None:
        """Until the monitor has written the device's heartbeat history and its `online` event."""
        deadline = time.monotonic() + timeout
        while True:
            history = self.ops("GET", f"/api/v1/devices/{device_id}/heartbeats")["heartbeats"]
            events = self.ops("GET", f"/api/v1/devices/{device_id}/events")["events"]
            if history and events:
                return
            if time.monotonic() > deadline:
                raise SetupError(f"no heartbeat history or status event for {device_id} within {timeout:.0f} s")
            time.sleep(0.2)

    def stop(self) -> None:
        for name, process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=5)
            log(f"{name} stopped (exit {process.returncode})")
        self.processes.clear()
        self.PIDS.unlink(missing_ok=True)
        if self.services_started:
            try:
                out = self.services("stop")
                sys.stdout.write("".join(f"fuzz: {line}\n" for line in out.splitlines()))
            except (SetupError, subprocess.TimeoutExpired) as error:
                log(f"warning: {error}")
            self.services_started = False


def write_config(path: Path) -> None:
    """The schemathesis config: bearer tokens per security scheme, the registered devices, the hooks.

    Values are `${VAR}`s schemathesis reads from the environment (set by `run_schemathesis`).
    """
    hooks = json.dumps(str(REPO / "scripts/fuzz_hooks.py"))
    path.write_text(f"""\
# Written by scripts/fuzz.py; the ${{…}} values come from the environment of each run.
# Hooks (scripts/fuzz_hooks.py): the heartbeat body's device_id = the path id, uptime's from < to,
# and the `page-cursor` format (a cursor the API could have returned).
hooks = {hooks}
continue-on-failure = true

[auth.openapi.adminToken]
bearer = "${{HB_FUZZ_ADMIN_TOKEN}}"

[auth.openapi.deviceToken]
bearer = "${{HB_FUZZ_DEVICE_TOKEN}}"

# Every operation on one device works on the registered device: the heartbeat reaches Redis with
# the deviceToken above; the ops API reads its history, events and commands. (The ops run, which
# rotates the token, comes after the gateway run.)
[[operations]]
include-path-regex = "^/api/v1/devices/\\\\{{id\\\\}}"
parameters = {{ "path.id" = "${{HB_FUZZ_DEVICE_ID}}" }}
""")


def summarize(report: Path, ndjson: Path) -> dict:
    """Counts from schemathesis's JSON report and NDJSON event log."""
    summary = {"requests": 0, "checks": 0, "failed_checks": 0, "cases": 0, "failures": [], "errors": [], "exit_code": None,
               "statuses": {}}
    try:
        document = json.loads(report.read_text())
    except (OSError, ValueError):
        return summary
    summary["cases"] = document.get("test_cases", {}).get("generated", 0)
    summary["failures"] = document.get("failures", [])
    summary["errors"] = document.get("errors", [])
    summary["exit_code"] = document.get("exit_code")
    summary["warnings"] = {name: items for name, items in (document.get("warnings") or {}).items() if items}
    try:
        with open(ndjson) as events:
            for line in events:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                for interaction, checks in iter_interactions(event):
                    summary["requests"] += 1
                    status = (interaction.get("response") or {}).get("status_code", "error")
                    summary["statuses"][status] = summary["statuses"].get(status, 0) + 1
                    summary["checks"] += len(checks)
                    summary["failed_checks"] += sum(1 for c in checks if str(c.get("status")).lower() == "failure")
    except OSError:
        pass
    return summary


def iter_interactions(event: dict):
    """(interaction, checks) of every request in a ScenarioFinished event of the NDJSON log."""
    finished = event.get("ScenarioFinished")
    if not isinstance(finished, dict):
        return
    recorder = finished.get("recorder") or {}
    interactions = recorder.get("interactions") or {}
    checks = recorder.get("checks") or {}
    for case_id, interaction in interactions.items():
        yield interaction, [c.get("value", c) for c in checks.get(case_id, [])]


def run_schemathesis(api: str, stack: Stack, config: Path, args: argparse.Namespace, devices: dict[str, str]) -> dict:
    out_dir = RUN_DIR / f"report-{api}"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    url = stack.gateway_url if api == "gateway" else stack.monitor_url
    command = [
        args.schemathesis, "--config-file", str(config), "run", str(args.schema), "--url", url, "--include-tag", api,
        "--checks", "all", "-n", str(args.examples), "--seed", str(args.seed), "--generation-database", "none",
        "--request-timeout", "10", "--no-color", "--report", "json,ndjson,junit", "--report-dir", str(out_dir),
    ]
    if args.exclude_checks:
        command += ["--exclude-checks", args.exclude_checks]
    env = dict(os.environ, HB_FUZZ_ADMIN_TOKEN=stack.admin_token, **devices)
    shown = " ".join(command)
    log(f"{api}: {shown}")
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=RUN_DIR, env=env, start_new_session=True)
    try:
        code = process.wait(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        code = None
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    summary = summarize(next(out_dir.glob("*.json"), out_dir / "missing.json"), next(out_dir.glob("*.ndjson"), out_dir / "missing.ndjson"))
    summary.update(api=api, seconds=time.monotonic() - started, returncode=code, report_dir=out_dir)
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", action="store_true", help=f"quick run for `make test` (-n {SHORT_EXAMPLES}, fixed seed)")
    parser.add_argument("--bin", type=Path, default=REPO / ".build/debug", help="directory of heartbeat-ingest and heartbeat-monitor")
    parser.add_argument("-n", "--examples", type=int, help=f"test cases per operation (default {LONG_EXAMPLES}; --short {SHORT_EXAMPLES})")
    parser.add_argument("--seed", type=int, help="schemathesis seed (default: random; --short: fixed)")
    parser.add_argument("--api", choices=["gateway", "ops", "both"], default="both", help="which API to fuzz (default both)")
    parser.add_argument("--schema", type=Path, default=REPO / "docs/openapi.yaml", help="the OpenAPI document (default docs/openapi.yaml)")
    parser.add_argument("--exclude-checks", help="schemathesis checks to skip, comma-separated (default: none; all run)")
    parser.add_argument("--timeout", type=int, help=f"seconds per API before the run is stopped (default {LONG_TIMEOUT}; --short {SHORT_TIMEOUT})")
    parser.add_argument("--schemathesis", default=shutil.which("schemathesis") or "schemathesis", help="the schemathesis executable")
    args = parser.parse_args()
    args.examples = args.examples or (SHORT_EXAMPLES if args.short else LONG_EXAMPLES)
    args.seed = args.seed if args.seed is not None else (SHORT_SEED if args.short else secrets.randbelow(2**31))
    args.timeout = args.timeout or (SHORT_TIMEOUT if args.short else LONG_TIMEOUT)
    args.bin = args.bin.resolve()
    args.schema = args.schema.resolve()

    try:
        version = subprocess.run([args.schemathesis, "--version"], capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        version = ""
    if not version.startswith("schemathesis, version 4."):
        print(f"fuzz: schemathesis 4 not found ({version or args.schemathesis}): pip install 'schemathesis>=4,<5'", file=sys.stderr)
        return 2

    # SIGTERM (e.g. a CI timeout) unwinds like Ctrl-C, through the finally below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    stack = Stack(args.bin)
    results = []
    try:
        lock = take_lock(wait=args.timeout)
        stack.start()
        device_id, device_token = stack.register("fuzz device")
        # Something to deliver: the heartbeat replies carry a command and the playlist flag.
        stack.ops("PUT", f"/api/v1/devices/{device_id}/playlist", {"playlist_id": "0b9d6a36-3f7a-4c1e-9a55-2f6a0c7d8e41"})
        stack.ops("POST", f"/api/v1/devices/{device_id}/commands", {"type": "screenshot", "payload": {"scale": 0.5}, "ttl_seconds": 3600}, expect=202)
        # One heartbeat before fuzzing, so the ops API has history, a status event and a delivered command to show.
        status, reply = http("POST", f"{stack.gateway_url}/api/v1/devices/{device_id}/heartbeat", device_token, {
            "device_id": device_id, "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "current_playlist": "p1",
            "storage_status": {"total_gb": 64, "used_gb": 32}, "network_status": "connected", "player_version": "1.2.3"})
        if status != 200 or len(json.loads(reply).get("commands", [])) != 1:
            raise SetupError(f"first heartbeat: {status} {reply[:300]!r}")
        stack.wait_for_history(device_id)
        log(f"registered device {device_id}: one heartbeat recorded, in its history and status events")
        config = RUN_DIR / "schemathesis.toml"
        write_config(config)
        devices = {"HB_FUZZ_DEVICE_ID": device_id, "HB_FUZZ_DEVICE_TOKEN": device_token}
        for api in (["gateway", "ops"] if args.api == "both" else [args.api]):
            results.append(run_schemathesis(api, stack, config, args, devices))
            problem = stack.interference()
            if problem:
                log(f"during the {api} run: {problem}")
                results[-1]["crashed"] = problem
                break
    except (SetupError, subprocess.SubprocessError, OSError, ValueError, KeyError) as error:
        log(f"setup failed: {type(error).__name__}: {error}")
        return 2
    finally:
        stack.stop()

    clean = True
    print()
    print(f"fuzz summary (seed {args.seed}, -n {args.examples}, schema {args.schema.relative_to(REPO) if args.schema.is_relative_to(REPO) else args.schema})")
    for r in results:
        ok = r["returncode"] == 0 and not r["failures"] and not r["errors"] and not r.get("crashed")
        clean = clean and ok
        status = "clean" if ok else "FAILED"
        if r["returncode"] is None:
            status += f" (stopped after {args.timeout} s)"
        print(f"  {r['api']:8} {status}: {r['requests']} requests, {r['checks']} checks, {r['failed_checks']} failed checks, "
              f"{r['cases']} test cases, {r['seconds']:.0f} s (report: {r['report_dir'].relative_to(REPO)})")
        print(f"    responses: {', '.join(f'{k}×{v}' for k, v in sorted(r['statuses'].items(), key=lambda kv: str(kv[0])))}")
        for failure in r["failures"]:
            print(f"    failure: {failure.get('title')} ×{failure.get('count')}: {', '.join(failure.get('operations') or [])}")
        for error in r["errors"]:
            print(f"    error: {error.get('title')} ×{error.get('count')}")
        for name, items in r.get("warnings", {}).items():
            print(f"    warning: {name}: {', '.join(map(str, items))[:300]}")
        if r.get("crashed"):
            print(f"    not trustworthy: {r['crashed'].splitlines()[0]}")
    for name in ("heartbeat-ingest", "heartbeat-monitor"):
        lines = [line for line in tail(RUN_DIR / f"{name}.log", 100000).splitlines() if " error " in line or " critical " in line]
        if lines:
            distinct = sorted({line.split(" ", 1)[-1][:200] for line in lines})
            print(f"  note: {name} logged {len(lines)} error/critical lines ({RUN_DIR.relative_to(REPO) / (name + '.log')}), e.g.")
            for line in distinct[:3]:
                print(f"    {line}")
    print("fuzz: clean" if clean else "fuzz: FAILED")
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
