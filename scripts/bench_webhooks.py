#!/usr/bin/env python3
"""Webhook intake benchmark: signed vendor notifications accepted durably per second, beside the same
server's plain GET /healthz measured in the same run (the machines are noisy; the ratio is the figure).

Each notification is a distinct Polar AccessLink EXERCISE event signed the way Polar signs
(Polar-Webhook-Signature: hex HMAC-SHA256 over the raw body with the webhook's signature_secret_key),
so every request goes through verification, dedupe and the group-committed inbox insert
(synchronous=FULL) before its 200. The events name users nobody linked, so no vendor fetch follows.

Run: make bench   (or: python3 scripts/bench_webhooks.py --bin .build/release/pulsegate)
Goal (issue 3): >= 20,000 notifications/s with p99 < 25 ms.
"""
import argparse
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from bench_daemon import free_port, wait_healthy, rss_kib  # noqa: E402

SECRET = b"bench-signature-secret-key"

LUA = r"""
-- Each wrk thread loads its share of pre-signed requests (wrk's Lua has no HMAC) and cycles them.
local counter = 1
local threads = {}
function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end
function init(args)
  -- Requests are formatted once here, so wrk spends its CPU (shared with the daemon) on sending.
  requests = {}
  local n = 0
  local nthreads = tonumber(args[2])
  for line in io.lines(args[1]) do
    if n % nthreads == id then
      local tab = line:find("\t", 1, true)
      table.insert(requests, wrk.format("POST", "/v1/webhooks/polar",
        {["Content-Type"] = "application/json", ["Polar-Webhook-Signature"] = line:sub(1, tab - 1)},
        line:sub(tab + 1)))
    end
    n = n + 1
  end
end
function request()
  local r = requests[counter]
  counter = counter % #requests + 1
  return r
end
"""


def wrk(args, duration, threads, connections):
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", *args],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(\w+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, total, f"{p99.group(1)}{p99.group(2)}", int(non2xx.group(1)) if non2xx else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=".build/release/pulsegate")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--events", type=int, default=600_000, help="distinct signed notifications prepared")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: apt-get install wrk (make bench installs it)")

    work = tempfile.mkdtemp(prefix="pulsegate-bench-webhooks-", dir=os.environ.get("BENCH_DIR"))
    port = free_port()
    requests_file = os.path.join(work, "requests.tsv")
    with open(requests_file, "w") as f:
        for i in range(args.events):
            body = json.dumps({"event": "EXERCISE", "user_id": 900000 + i % 5000, "entity_id": f"bench{i}",
                               "timestamp": "2026-11-20T07:00:00Z",
                               "url": f"https://www.polaraccesslink.com/v3/exercises/bench{i}"},
                              separators=(",", ":"))
            sig = hmac.new(SECRET, body.encode(), hashlib.sha256).hexdigest()
            f.write(f"{sig}\t{body}\n")
    script = os.path.join(work, "webhooks.lua")
    with open(script, "w") as f:
        f.write(LUA)
    config = os.path.join(work, "pulsegate.yaml")
    with open(config, "w") as f:
        f.write(f"""server: {{port: {port}}}
state_directory: {work}/state
log: {{level: warning}}
sinks:
  - {{id: archive, type: file, path: samples.ndjson}}
vendors:
  polar:
    client_id: bench
    client_secret: bench-client-secret
    webhook: {{signature_secret_key: {SECRET.decode()}}}
    urls: {{api: "http://127.0.0.1:9/v3"}}
""")
    proc = subprocess.Popen([args.bin, "serve", "--config", config], stdout=subprocess.DEVNULL)
    try:
        wait_healthy(port, proc)
        base = f"http://127.0.0.1:{port}"
        rss_before = rss_kib(proc.pid)
        # Warm-up, then the same connections and duration for both measurements.
        wrk(["-s", script, base, "--", requests_file, str(args.threads)], 2, args.threads, args.connections)
        hooks, total, hooks_p99, hooks_bad = wrk(
            ["-s", script, base, "--", requests_file, str(args.threads)], args.duration, args.threads,
            args.connections)
        plain, _, plain_p99, plain_bad = wrk([f"{base}/healthz"], args.duration, args.threads, args.connections)
        rss_after = rss_kib(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    db = sqlite3.connect(f"{work}/state/pulsegate.sqlite")
    stored = db.execute("SELECT COUNT(*) FROM webhook_inbox").fetchone()[0]
    db.close()
    print(f"webhook intake (signed Polar notifications, durable): {hooks:,.0f}/s, p99 {hooks_p99}, "
          f"non-2xx {hooks_bad}, {stored:,} distinct notifications stored")
    print(f"plain GET /healthz, same server and connections:      {plain:,.0f}/s, p99 {plain_p99}, non-2xx {plain_bad}")
    print(f"ratio webhooks / plain: {hooks / plain:.2f}; RSS {rss_before // 1024} -> {rss_after // 1024} MiB")
    if total > args.events:
        print(f"note: {total - args.events:,} requests repeated prepared events (absorbed as duplicates)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
