"""Process lifecycle: SIGTERM drains, sd_notify, readiness, metrics, logs, environment overrides."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import tempfile
import threading
import time


import pgtest


def _config(tmp_path, receiver, key, **extra):
    return pgtest.make_config(
        tmp_path / "state",
        sinks=[pgtest.http_sink(receiver, "pipeline", batch_size=500, initial_ms=50, max_ms=500),
               pgtest.file_sink("archive")],
        api_keys=[key],
        **extra,
    )


# ---------------------------------------------------------------------------------------------------
# SIGTERM


def test_sigterm_drains_healthy_sinks_and_exits_0(tmp_path, daemon_factory, receiver):
    key = pgtest.ApiKey("drain")
    timeout = 20
    d = daemon_factory(_config(tmp_path, receiver, key, shutdown={"timeout_seconds": timeout}), name="drain")
    d.start()
    acked: set[str] = set()
    for _ in range(10):
        acked.update(d.accept(pgtest.heart_rates(1000, "drain"), key))
    t0 = time.monotonic()
    rc = d.stop(timeout=timeout + 30)
    took = time.monotonic() - t0
    assert rc == 0, f"exit {rc} after SIGTERM\n{d.tail(30)}"
    file_ids = set(pgtest.read_file_sink(d.state_dir)[0])
    missing_http, missing_file = acked - receiver.snapshot_ids(), acked - file_ids
    print(f"SIGTERM took {took:.1f}s; undelivered at exit: http {len(missing_http)}, file {len(missing_file)}")
    if took < timeout - 1:
        # It exited before its flush deadline, with both sinks healthy: it must have delivered everything.
        assert not missing_http and not missing_file, (
            f"exited after {took:.1f}s (timeout {timeout}s) with {len(missing_http)} samples not delivered to "
            f"the HTTP sink and {len(missing_file)} not written to the file sink")
    # Whatever was left is delivered after a restart.
    d.start()
    receiver.wait_for(acked, 60, d)
    pgtest.wait_file_sink(d.state_dir, acked, 60, d)
    assert d.stop() == 0


def test_sigterm_with_slow_sink_honours_timeout_and_stops_intake(tmp_path, daemon_factory, receiver):
    key = pgtest.ApiKey("slow")
    timeout = 4
    cfg = pgtest.make_config(
        tmp_path / "state",
        sinks=[pgtest.http_sink(receiver, "pipeline", batch_size=100, timeout_seconds=10, initial_ms=50, max_ms=500)],
        api_keys=[key],
        shutdown={"timeout_seconds": timeout},
    )
    receiver.delay = 1.0  # 20 batches x 1 s: far more than the shutdown timeout
    d = daemon_factory(cfg, name="slow")
    d.start()
    acked = set(d.accept(pgtest.heart_rates(2000, "slow"), key))
    pgtest.wait_until(lambda: receiver.requests >= 1, 20, 0.1, "delivery never started")
    t0 = time.monotonic()
    d.proc.terminate()
    time.sleep(0.5)
    # intake is stopped while draining: either nothing listens or it refuses; it never stores
    try:
        r = d.post(pgtest.ndjson(pgtest.heart_rates(5, "after-sigterm")), key, timeout=5)
        assert r.status_code != 200, f"a sample was accepted after SIGTERM: {r.text[:300]}"
        assert r.status_code == 503, f"{r.status_code} {r.text[:200]}"
    except pgtest.requests.RequestException:
        pass
    rc = d.wait_exit(timeout + 15)
    took = time.monotonic() - t0
    assert rc == 0, f"exit {rc}\n{d.tail(30)}"
    assert took <= timeout + 5, f"shutdown took {took:.1f}s with shutdown.timeout_seconds={timeout}"
    delivered = receiver.snapshot_ids()
    assert delivered < acked, "a 20 s backlog cannot have been delivered within a 4 s shutdown"
    receiver.delay = 0
    d.start()
    receiver.wait_for(acked, 60, d)
    assert receiver.snapshot_ids() == acked
    assert d.stop() == 0


def test_sigterm_with_sink_down_exits_0_and_delivers_after_restart(tmp_path, daemon_factory, receiver):
    key = pgtest.ApiKey("down")
    timeout = 3
    d = daemon_factory(_config(tmp_path, receiver, key, shutdown={"timeout_seconds": timeout}), name="down")
    receiver.stop()
    d.start()
    acked = set(d.accept(pgtest.heart_rates(1500, "down"), key))
    t0 = time.monotonic()
    rc = d.stop(timeout=timeout + 20)
    assert rc == 0, d.tail(30)
    assert time.monotonic() - t0 <= timeout + 5, "shutdown.timeout_seconds not honoured with a dead sink"
    # the file sink was healthy: it has everything
    assert acked <= set(pgtest.read_file_sink(d.state_dir)[0])
    receiver.start()
    d.start()
    receiver.wait_for(acked, 60, d)
    assert d.stop() == 0


def test_sigint_also_stops_cleanly(tmp_path, daemon_factory, receiver):
    key = pgtest.ApiKey("sigint")
    d = daemon_factory(_config(tmp_path, receiver, key), name="sigint")
    d.start()
    acked = set(d.accept(pgtest.heart_rates(10, "sigint"), key))
    assert d.stop(sig=signal.SIGINT) == 0
    d.start()
    receiver.wait_for(acked, 30, d)


# ---------------------------------------------------------------------------------------------------
# sd_notify


class NotifySocket:
    def __init__(self, port_to_probe: int):
        self.dir = tempfile.mkdtemp(prefix="pgn", dir="/tmp")  # short: sun_path is 108 bytes
        self.path = os.path.join(self.dir, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.port = port_to_probe
        self.messages: list[tuple[float, str]] = []
        self.listening_at_ready: bool | None = None
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            now = time.monotonic()
            for line in data.decode(errors="replace").split("\n"):
                if not line:
                    continue
                if line == "READY=1" and self.listening_at_ready is None:
                    self.listening_at_ready = not pgtest.port_refuses(self.port)
                self.messages.append((now, line))

    def times(self, msg: str) -> list[float]:
        return [t for t, m in self.messages if m == msg]

    def close(self):
        self._stop.set()
        self._t.join(timeout=2)
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def test_sd_notify_ready_watchdog_stopping(tmp_path, daemon_factory, receiver):
    key = pgtest.ApiKey("notify")
    d = daemon_factory(_config(tmp_path, receiver, key), name="notify")
    ns = NotifySocket(d.port)
    try:
        d.start(wait=False, env={"NOTIFY_SOCKET": ns.path, "WATCHDOG_USEC": "2000000"})
        pgtest.wait_until(lambda: ns.times("READY=1") or not d.alive(), 60, 0.05, "no READY=1 within 60s")
        assert d.alive(), d.tail(30)
        assert ns.listening_at_ready, "READY=1 was sent before the HTTP port accepted connections"
        d.wait_healthy(10)
        time.sleep(5)
        wd = ns.times("WATCHDOG=1")
        assert len(wd) >= 3, f"WATCHDOG_USEC=2s: expected WATCHDOG=1 about every 1s, got {len(wd)} in ~5s: " \
                             f"{[m for _, m in ns.messages]}"
        gaps = [b - a for a, b in zip(wd, wd[1:])]
        assert max(gaps) < 2.0, f"watchdog gaps {gaps} exceed the 2 s watchdog interval"
        assert d.stop() == 0
        time.sleep(0.3)
        stopping = ns.times("STOPPING=1")
        assert stopping, f"no STOPPING=1 after SIGTERM: {[m for _, m in ns.messages]}"
        assert len(ns.times("READY=1")) == 1, "READY=1 sent more than once"
    finally:
        ns.close()


def test_without_notify_socket_runs_fine(tmp_path, daemon_factory, receiver):
    key = pgtest.ApiKey("nonotify")
    d = daemon_factory(_config(tmp_path, receiver, key), name="nonotify")
    d.start(env={"WATCHDOG_USEC": "1000000"})  # watchdog asked for, but nowhere to send it
    time.sleep(1.5)
    assert d.alive()
    assert d.stop() == 0


# ---------------------------------------------------------------------------------------------------
# readiness and metrics


def test_readyz_follows_sink_health(tmp_path, daemon_factory, receiver):
    key = pgtest.ApiKey("ready")
    d = daemon_factory(_config(tmp_path, receiver, key), name="ready")
    d.start()
    pgtest.wait_until(lambda: d.get("/readyz").status_code == 200, 30, 0.3,
                      lambda: f"/readyz with healthy sinks: {d.get('/readyz').text[:300]}")
    receiver.stop()
    d.accept(pgtest.heart_rates(3, "ready"), key)  # gives the sink something to fail on

    def not_ready():
        r = d.get("/readyz")
        return [r] if r.status_code == 503 else None  # (a Response is falsy when not ok)

    [r] = pgtest.wait_until(not_ready, 30, 0.3, "/readyz stays 200 while the HTTP sink's receiver is down")
    assert "pipeline" in r.text, f"/readyz 503 does not name the failing sink: {r.text[:500]}"
    assert d.get("/healthz").status_code == 200, "liveness must not depend on sinks"
    receiver.start()
    pgtest.wait_until(lambda: d.get("/readyz").status_code == 200, 60, 0.3, "/readyz stays 503 after recovery")


def test_metrics_count_intake_rejections_and_outbox(tmp_path, daemon_factory, receiver):
    key = pgtest.ApiKey("metrics")
    d = daemon_factory(_config(tmp_path, receiver, key), name="metrics")
    d.start()
    r = d.get("/metrics")
    assert r.status_code == 200
    assert r.headers.get("Content-Type", "").startswith("text/plain"), r.headers.get("Content-Type")
    before = pgtest.parse_metrics(r.text)
    names = {n for n, _, _ in before}
    assert any(n.startswith("pulsegate_") for n in names), sorted(names)[:50]

    good = pgtest.heart_rates(37, "metrics")
    bad = [{**s, "metric": "nope"} for s in pgtest.heart_rates(3, "metrics-bad")]
    resp = d.post(pgtest.ndjson(good + bad), key)
    assert resp.status_code == 200 and resp.json()["accepted"] == 37, resp.text[:300]
    ids = [i for i in resp.json()["ids"] if i]
    receiver.wait_for(ids, 30, d)
    time.sleep(0.5)
    after = d.metrics()

    def totals(ms):
        by_series, by_name = {}, {}
        for n, labels, v in ms:
            by_series[(n, tuple(sorted(labels.items())))] = v
            by_name[n] = by_name.get(n, 0) + v
        return by_series, by_name

    s0, n0 = totals(before)
    s1, n1 = totals(after)
    deltas = {k: v - s0.get(k, 0) for k, v in s1.items()}
    deltas.update({(k, "sum"): v - n0.get(k, 0) for k, v in n1.items()})
    pg = {k: v for k, v in deltas.items() if k[0].startswith("pulsegate_")}

    def text(k):  # the name and the label values of a series
        return (k[0] + " " + str(k[1])).lower()

    intake = [k for k, v in pg.items() if v == 37 and any(w in text(k) for w in ("intake", "accept", "received"))]
    assert intake, f"no pulsegate_ intake counter grew by exactly 37: { {k: v for k, v in pg.items() if v} }"
    rejections = [k for k, v in pg.items() if v == 3 and "reject" in text(k)]
    assert rejections, f"no pulsegate_ rejection counter grew by exactly 3: { {k: v for k, v in pg.items() if v} }"
    depth = [k for k in pg if "outbox" in k[0] and "depth" in k[0]]
    assert depth, f"no pulsegate_*outbox*depth* metric: {sorted(n for n in n1 if n.startswith('pulsegate_'))}"
    assert any("sink" in k[0] or "deliver" in k[0] for k in pg), "no sink delivery metrics"


# ---------------------------------------------------------------------------------------------------
# logs, secrets, environment overrides, version


def test_logs_are_json_lines_and_secrets_are_redacted(tmp_path, daemon_factory, receiver):
    key = pgtest.ApiKey("secret-key")
    d = daemon_factory(_config(tmp_path, receiver, key, log={"level": "debug", "format": "json"}), name="logs")
    d.start()
    ids = d.accept(pgtest.heart_rates(20, "logs"), key)
    d.post(pgtest.ndjson(pgtest.heart_rates(1)), pgtest.ApiKey("intruder"))  # a 401 gets logged somehow
    receiver.wait_for(ids, 30, d)
    check = d.cli("config", "check")
    doctor = d.cli("doctor")
    assert d.stop() == 0
    secret = receiver.secret.decode()
    for where, text in (("stderr", d.stderr_text()), ("stdout", d.stdout_text()),
                        ("config check", check.stdout + check.stderr), ("doctor", doctor.stdout + doctor.stderr)):
        assert secret not in text, f"the HMAC secret appears in {where}"
        assert key.key not in text, f"the API key appears in {where}"
    lines = [ln for ln in d.stderr_text().splitlines() if ln.strip() and not ln.startswith("===== ")]
    assert lines, "no log lines on stderr"
    for ln in lines:
        try:
            obj = json.loads(ln)
        except ValueError:
            raise AssertionError(f"log line is not JSON: {ln[:300]!r}")
        assert isinstance(obj, dict), ln


def test_env_override_wins_over_file(tmp_path, daemon_factory, receiver):
    key = pgtest.ApiKey("env")
    cfg = _config(tmp_path, receiver, key)
    d = daemon_factory(cfg, name="env")
    port = pgtest.free_port()
    d.start(wait=False, env={"PULSEGATE__SERVER__PORT": str(port)})
    url = f"http://127.0.0.1:{port}/healthz"
    pgtest.wait_until(lambda: _ok(url) or not d.alive(), 60, 0.1, f"nothing answers on {url}")
    assert d.alive(), d.tail(30)
    assert pgtest.port_refuses(d.port), "the port from the file is used although the environment overrides it"
    assert d.stop() == 0


def _ok(url):
    try:
        return pgtest.http_session().get(url, timeout=2).status_code == 200
    except pgtest.requests.RequestException:
        return False


def test_pulsegate_config_variable(tmp_path, daemon_factory, receiver):
    key = pgtest.ApiKey("envcfg")
    d = daemon_factory(_config(tmp_path, receiver, key), name="envcfg")
    p = pgtest.run_cli(d.binary, "config", "check", env={**os.environ, "PULSEGATE_CONFIG": str(d.config_path),
                                                          "PULSEGATE__SERVER__PORT": "nope"}, cwd=tmp_path)
    # the file named by PULSEGATE_CONFIG is read (and the override applied to it)
    assert p.returncode == 78 and "server.port" in p.stdout + p.stderr, pgtest.cli_result(p)


def test_version(pulsegate_bin, tmp_path):
    p = pgtest.run_cli(pulsegate_bin, "version", cwd=tmp_path)
    assert p.returncode == 0, pgtest.cli_result(p)
    assert p.stdout.strip(), "version prints nothing"


# ---------------------------------------------------------------------------------------------------
# file sink rotation


def _rotation_run(tmp_path, daemon_factory, name, keep_files):
    key = pgtest.ApiKey(name)
    state = tmp_path / name
    cfg = pgtest.make_config(
        state, sinks=[pgtest.file_sink("archive", "samples.ndjson", rotate_bytes=8192, keep_files=keep_files,
                                       batch_size=40)],
        api_keys=[key])
    d = daemon_factory(cfg, name=name)
    d.start()
    acked: list[str] = []
    for _ in range(10):
        acked += d.accept(pgtest.heart_rates(100, name), key)
    pgtest.wait_until(lambda: pgtest.outbox_depth(d) == 0, 30, 0.3, "file sink does not catch up")
    assert d.stop() == 0
    rotated = sorted(p.name for p in state.glob("samples-*.ndjson"))
    assert (state / "samples.ndjson").exists() or rotated, "no file sink output at all"
    return acked, rotated, state


def test_file_sink_rotation_keeps_every_line(tmp_path, daemon_factory):
    # ~190 kB through 8 kB files: many rotations, several in the same second. Nothing may be lost.
    acked, rotated, state = _rotation_run(tmp_path, daemon_factory, "rot-all", keep_files=1000)
    assert len(rotated) >= 10, f"expected many rotations of 8 kB files, got {rotated}"
    samples, _, _, corrupt = pgtest.read_file_sink(state)
    assert not corrupt, corrupt[:5]
    missing = set(acked) - set(samples)
    assert not missing, (f"{len(missing)} of {len(acked)} samples lost across {len(rotated)} rotated files "
                         f"(rotated names colliding within one second?): {rotated}")


def test_file_sink_rotation_deletes_beyond_keep_files(tmp_path, daemon_factory):
    acked, rotated, state = _rotation_run(tmp_path, daemon_factory, "rot-keep", keep_files=3)
    assert len(rotated) == 3, f"keep_files=3 but rotated files are {rotated}"
    samples, _, _, corrupt = pgtest.read_file_sink(state)
    assert not corrupt, corrupt[:5]
    assert acked[-1] in samples, "the newest sample is not in the kept files"


def test_stdout_sink_writes_the_same_lines_and_no_logs(tmp_path, daemon_factory):
    key = pgtest.ApiKey("stdout")
    cfg = pgtest.make_config(tmp_path / "state",
                             sinks=[{"id": "console", "type": "stdout"}, pgtest.file_sink("archive")],
                             api_keys=[key])
    d = daemon_factory(cfg, name="stdout")
    d.start()
    ids = d.accept(pgtest.heart_rates(50, "stdout"), key)
    pgtest.wait_file_sink(d.state_dir, ids, 30, d)
    pgtest.wait_until(lambda: pgtest.outbox_depth(d) == 0, 30, 0.2, "stdout sink does not catch up")
    assert d.stop() == 0
    _, file_raw, _, _ = pgtest.read_file_sink(d.state_dir)
    out_lines = [ln for ln in d.stdout_text().splitlines() if ln and not ln.startswith("===== ")]
    stdout_raw = {}
    for ln in out_lines:
        obj = json.loads(ln)  # anything on stdout that is not a sample line fails here
        assert obj.get("v") == 1 and "id" in obj and "level" not in obj, f"not a sample line on stdout: {ln[:200]}"
        stdout_raw[obj["id"]] = ln.encode()
    assert set(stdout_raw) == set(ids), f"stdout has {len(stdout_raw)} samples, {len(ids)} accepted"
    assert all(stdout_raw[i] == file_raw[i] for i in ids), "stdout and file sink lines differ"
