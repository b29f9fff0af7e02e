#!/usr/bin/env python3
"""Daemon-level benchmarks against the real (release) binary, each beside a same-run baseline.

  idle RSS        the daemon's resident memory after start-up, idle (goal < 40 MB)
  HTTP intake     wrk POSTing NDJSON batches of 1,000 samples to /v1/samples (durable: each answer comes
                  after the group commit), beside the same server's GET /healthz on the same connections

Run: make bench   (or: python3 scripts/bench_daemon.py --bin .build/release/pulsegate)
"""
import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def wait_healthy(port, proc, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("daemon did not become healthy")


def wrk(args, duration):
    out = subprocess.run(["wrk", "-t2", "-c16", f"-d{duration}s", "--latency", *args],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(\w+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, f"{p99.group(1)}{p99.group(2)}", int(non2xx.group(1)) if non2xx else 0, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=".build/release/pulsegate")
    ap.add_argument("--duration", type=int, default=10)
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: apt-get install wrk (make bench installs it)")

    work = tempfile.mkdtemp(prefix="pulsegate-bench-")
    port = free_port()
    key = "pgk_benchmark-key"
    config = os.path.join(work, "pulsegate.yaml")
    with open(config, "w") as f:
        f.write(f"""server: {{port: {port}, max_body_bytes: 16777216}}
state_directory: {work}/state
outbox: {{high_watermark: 50000000}}
log: {{level: warning}}
sinks:
  - {{id: archive, type: file, path: samples.ndjson, rotate_bytes: 1073741824}}
api_keys:
  - {{name: bench, sha256: {hashlib.sha256(key.encode()).hexdigest()}, scopes: [samples:write]}}
""")
    proc = subprocess.Popen([args.bin, "serve", "--config", config], stderr=open(os.path.join(work, "daemon.log"), "w"))
    try:
        wait_healthy(port, proc)
        time.sleep(3)
        idle = rss_kib(proc.pid)
        anon = 0
        with open(f"/proc/{proc.pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Anonymous:"):
                    anon = int(line.split()[1])
        print(f"idle RSS: {idle / 1024:.1f} MiB = {idle * 1024 / 1e6:.1f} MB, of which anonymous {anon / 1024:.1f} MiB "
              f"(goal < 40 MB: {'met' if idle * 1024 < 40e6 else 'NOT met'})")

        base = int(time.time() * 1000) - 3_600_000
        lines = []
        for i in range(1000):
            ms = base + i
            t = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"
            lines.append(json.dumps({"subject": f"member-{i % 50}", "metric": "heart_rate", "value": 60 + i % 100,
                                     "unit": "/min", "start": t, "source": {"kind": "app", "app": "health_connect"}},
                                    separators=(",", ":")))
        body = "\n".join(lines) + "\n"
        lua = os.path.join(work, "post.lua")
        with open(lua, "w") as f:
            f.write('wrk.method = "POST"\n')
            f.write(f'wrk.headers["Authorization"] = "Bearer {key}"\n')
            f.write('wrk.headers["Content-Type"] = "application/x-ndjson"\n')
            f.write(f"wrk.body = {json.dumps(body)}\n")

        base_rps, base_p99, _, _ = wrk([f"http://127.0.0.1:{port}/healthz"], args.duration)
        rps, p99, non2xx, out = wrk(["-s", lua, f"http://127.0.0.1:{port}/v1/samples"], args.duration)
        if non2xx:
            print(out)
            sys.exit(f"{non2xx} intake requests failed")
        print(f"GET /healthz baseline: {base_rps:,.0f} req/s, p99 {base_p99}")
        print(f"POST /v1/samples (1,000 samples/request, durable): {rps:,.0f} req/s = {rps * 1000:,.0f} samples/s, "
              f"p99 {p99}; ratio to baseline requests {rps / base_rps:.3f}")
        print(f"RSS after load: {rss_kib(proc.pid) / 1024:.1f} MiB")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
