"""What scripts/chaos.py and scripts/deployment.py share: timestamps, polling, plain HTTP."""
import json
import re
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
