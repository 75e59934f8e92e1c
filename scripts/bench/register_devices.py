#!/usr/bin/env python3
"""Registers N devices through the ops API and writes "<id>\t<token>" lines (for wrk and heartbeat-loadgen).

usage: register_devices.py COUNT OUTPUT [--admin http://127.0.0.1:8081] (ADMIN_TOKEN from the environment)
"""
import argparse, http.client, json, os, sys, time, urllib.parse

parser = argparse.ArgumentParser()
parser.add_argument("count", type=int)
parser.add_argument("output")
parser.add_argument("--admin", default="http://127.0.0.1:8081")
args = parser.parse_args()
token = os.environ.get("ADMIN_TOKEN") or sys.exit("ADMIN_TOKEN is not set")
url = urllib.parse.urlparse(args.admin)
conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
started = time.time()
with open(args.output, "w") as out:
    for i in range(args.count):
        conn.request("POST", "/api/v1/devices", json.dumps({"name": f"bench-{i}"}), headers)
        reply = conn.getresponse()
        body = reply.read()
        if reply.status != 201:
            sys.exit(f"registration {i} failed: {reply.status} {body!r}")
        device = json.loads(body)
        out.write(f"{device['id']}\t{device['token']}\n")
        if (i + 1) % 2000 == 0:
            print(f"registered {i + 1}/{args.count} ({(i + 1) / (time.time() - started):.0f}/s)", file=sys.stderr)
print(f"registered {args.count} devices in {time.time() - started:.1f} s -> {args.output}", file=sys.stderr)
