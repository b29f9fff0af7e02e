"""Shared helpers for the pulsegate end-to-end tests.

Everything here treats pulsegate as a black box: it writes a YAML config, starts the binary, talks
HTTP to it, and reads what the sinks received. Nothing imports or reads the daemon's sources except the
JSON Schema file the README names as the contract (test_schema.py).
"""

from __future__ import annotations

import collections
import errno
import hashlib
import hmac
import json
import math
import os
import re
import secrets
import signal
import socket
import subprocess
import threading
import time
import uuid
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterable

import requests
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO_ROOT / ".build" / "debug" / "pulsegate"
SCHEMA_PATH = REPO_ROOT / "Sources" / "PulseGateCore" / "Resources" / "sample-v1.schema.json"

UUID_V8_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def binary_path() -> Path:
    return Path(os.environ.get("PULSEGATE_BIN") or DEFAULT_BIN)


def _exec_retrying(start: Callable[[], Any], timeout: float = 180) -> Any:
    """Runs `start` (a Popen or subprocess.run call), waiting out a binary that is being relinked
    (ETXTBSY, or briefly missing) by a concurrent build."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return start()
        except OSError as e:
            if e.errno not in (errno.ETXTBSY, errno.ENOENT) or time.monotonic() > deadline:
                raise
            time.sleep(1)


# --------------------------------------------------------------------------------------------------
# small utilities


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_refuses(port: int) -> bool:
    """True when nothing accepts TCP connections on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


def wait_until(pred: Callable[[], Any], timeout: float, interval: float = 0.2,
               message: str | Callable[[], str] = "condition not met") -> Any:
    """Polls `pred` until it returns something truthy; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"timed out after {timeout:.0f}s: {text}")
        time.sleep(interval)


def http_session() -> requests.Session:
    """A session that ignores proxy variables: every address we talk to is on loopback."""
    s = requests.Session()
    s.trust_env = False
    return s


def retry_after_seconds(value: str | None) -> float | None:
    """Parses a Retry-After header (delta seconds or HTTP date); None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def assert_error_body(resp: requests.Response, status: int) -> dict:
    """The README's error shape: {"error": {"code": "...", "message": "..."}}."""
    assert resp.status_code == status, f"expected {status}, got {resp.status_code}: {resp.text[:500]}"
    try:
        body = resp.json()
    except ValueError:
        raise AssertionError(f"{status} body is not JSON: {resp.text[:500]!r}")
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), f"no error object: {body}"
    err = body["error"]
    assert isinstance(err.get("code"), str) and err["code"], f"error.code missing: {body}"
    assert isinstance(err.get("message"), str) and err["message"], f"error.message missing: {body}"
    return err


# --------------------------------------------------------------------------------------------------
# samples

# Every sample a test makes gets its own millisecond, so every sample of the whole run has a distinct
# deterministic id. The base is two days in the past, well away from the 5-minute future limit.
_BASE_MS = (int(time.time() * 1000) - 2 * 86_400_000) // 1000 * 1000
_next_ms = _BASE_MS
_ms_lock = threading.Lock()


def alloc_ms(n: int) -> int:
    """Reserves n consecutive milliseconds and returns the first."""
    global _next_ms
    with _ms_lock:
        first = _next_ms
        _next_ms += n
        return first


def iso(ms: int) -> str:
    secs, frac = divmod(ms, 1000)
    return datetime.fromtimestamp(secs, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:03d}Z"


def now_ms() -> int:
    return int(time.time() * 1000)


def heart_rate(ms: int, subject: str = "u1", value: float | None = None) -> dict:
    return {
        "subject": subject,
        "metric": "heart_rate",
        "value": value if value is not None else 60 + ms % 120,
        "unit": "/min",
        "start": iso(ms),
        "source": {"kind": "app", "app": "health_connect"},
    }


def heart_rates(n: int, subject: str = "u1") -> list[dict]:
    first = alloc_ms(n)
    return [heart_rate(first + i, subject) for i in range(n)]


def dumps(sample: dict) -> bytes:
    return json.dumps(sample, separators=(",", ":")).encode()


def ndjson(samples: Iterable[dict]) -> bytes:
    return b"".join(dumps(s) + b"\n" for s in samples)


# --------------------------------------------------------------------------------------------------
# config


class ApiKey:
    def __init__(self, name: str = "e2e", scopes: Iterable[str] = ("samples:write",),
                 requests_per_second: float | None = 100000, burst: int | None = 100000,
                 key: str | None = None):
        self.name = name
        self.key = key or "pgk_e2e_" + secrets.token_hex(16)
        self.sha256 = hashlib.sha256(self.key.encode()).hexdigest()
        self.scopes = list(scopes)
        self.requests_per_second = requests_per_second
        self.burst = burst

    def entry(self) -> dict:
        e: dict[str, Any] = {"name": self.name, "sha256": self.sha256, "scopes": self.scopes}
        if self.requests_per_second is not None:
            e["rate_limit"] = {"requests_per_second": self.requests_per_second, "burst": self.burst}
        return e

    def headers(self, content_type: str = "application/x-ndjson") -> dict:
        return {"Authorization": f"Bearer {self.key}", "Content-Type": content_type}


def file_sink(id: str = "archive", path: str = "samples.ndjson", **extra) -> dict:
    return {"id": id, "type": "file", "path": path, **extra}


def http_sink(receiver: "SinkReceiver", id: str = "pipeline", batch_size: int = 500,
              timeout_seconds: float = 5, initial_ms: int = 50, max_ms: int = 1000, **extra) -> dict:
    return {
        "id": id,
        "type": "http",
        "url": receiver.url,
        "hmac_secret": receiver.secret.decode(),
        "timeout_seconds": timeout_seconds,
        "batch_size": batch_size,
        "backoff": {"initial_ms": initial_ms, "max_ms": max_ms},
        **extra,
    }


def _merge(into: dict, extra: dict) -> dict:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v
    return into


def make_config(state_dir: Path, sinks: list[dict], api_keys: list[ApiKey], port: int | None = None,
                **extra: Any) -> dict:
    cfg: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": port or free_port()},
        "state_directory": str(state_dir),
        "sinks": sinks,
        "shutdown": {"timeout_seconds": 10},
        "log": {"level": "info", "format": "json"},
        "api_keys": [k.entry() for k in api_keys],
    }
    return _merge(cfg, extra)


# --------------------------------------------------------------------------------------------------
# the daemon

_LIVE: list["Daemon"] = []
_LIVE_LOCK = threading.Lock()


def live_daemons() -> list["Daemon"]:
    with _LIVE_LOCK:
        return list(_LIVE)


class Daemon:
    """One pulsegate instance: its config file, its process and its captured output.

    stdout and stderr go through pipes drained by threads into files in the test's tmp dir (so a
    file-size rlimit on the daemon never truncates its own logs); `tail()` returns the last lines.
    """

    def __init__(self, binary: Path, workdir: Path, config: dict, name: str = "pulsegate",
                 env: dict | None = None, preexec_fn: Callable[[], None] | None = None,
                 restore_signals: bool = True):
        self.binary = Path(binary)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.config = config
        self.config_path = self.workdir / f"{name}.yaml"
        self.log_path = self.workdir / f"{name}.stderr.log"
        self.stdout_path = self.workdir / f"{name}.stdout.log"
        self.env = env or {}
        self.preexec_fn = preexec_fn
        self.restore_signals = restore_signals
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.exit_codes: list[int] = []
        self._tail: collections.deque[str] = collections.deque(maxlen=400)
        self._threads: list[threading.Thread] = []
        self.write_config()
        with _LIVE_LOCK:
            _LIVE.append(self)

    # config ------------------------------------------------------------------------------------
    def write_config(self) -> None:
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))

    @property
    def port(self) -> int:
        return int(self.config["server"]["port"])

    @property
    def state_dir(self) -> Path:
        return Path(self.config["state_directory"])

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    # process -----------------------------------------------------------------------------------
    def _env(self, extra: dict | None) -> dict:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("PULSEGATE__") and k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC",
                                                                   "WATCHDOG_PID", "PULSEGATE_CONFIG")}
        env.update(self.env)
        env.update(extra or {})
        return env

    def _drain(self, pipe, path: Path, keep_tail: bool) -> None:
        with open(path, "ab") as out:
            for line in iter(pipe.readline, b""):
                out.write(line)
                out.flush()
                if keep_tail:
                    self._tail.append(line.decode("utf-8", "replace").rstrip("\n"))
        pipe.close()

    def start(self, wait: bool = True, timeout: float = 60, env: dict | None = None,
              args: list[str] | None = None) -> "Daemon":
        assert not self.alive(), "daemon already running"
        self.starts += 1
        banner = f"===== {self.name} start #{self.starts} at {datetime.now().isoformat()} =====\n"
        for p in (self.log_path, self.stdout_path):
            with open(p, "ab") as f:
                f.write(banner.encode())
        self._tail.append(banner.rstrip("\n"))
        cmd = [str(self.binary), "serve", "--config", str(self.config_path)] + (args or [])
        self.proc = _exec_retrying(lambda: subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=self._env(env), cwd=str(self.workdir), start_new_session=True,
            preexec_fn=self.preexec_fn, restore_signals=self.restore_signals))
        self._threads = [
            threading.Thread(target=self._drain, args=(self.proc.stderr, self.log_path, True), daemon=True),
            threading.Thread(target=self._drain, args=(self.proc.stdout, self.stdout_path, False), daemon=True),
        ]
        for t in self._threads:
            t.start()
        if wait:
            self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 60) -> None:
        s = http_session()
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                self._join()
                raise AssertionError(f"{self.name} exited with {rc} before /healthz answered\n"
                                     + self.tail(60))
            try:
                r = s.get(self.url("/healthz"), timeout=2)
                if r.status_code == 200:
                    assert r.json().get("status") == "ok", f"/healthz body: {r.text}"
                    return
                last = f"{r.status_code} {r.text[:200]}"
            except requests.RequestException as e:
                last = repr(e)
            time.sleep(0.05)
        raise AssertionError(f"{self.name}: /healthz not 200 within {timeout}s (last: {last})\n" + self.tail(60))

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _join(self) -> None:
        for t in self._threads:
            t.join(timeout=10)

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self._join()
            raise AssertionError(f"{self.name} did not exit within {timeout}s (SIGKILLed)\n" + self.tail(60))
        self._join()
        self.exit_codes.append(rc)
        return rc

    def stop(self, timeout: float = 60, sig: int = signal.SIGTERM) -> int:
        """Sends `sig` (SIGTERM) and returns the exit code; fails if it does not exit in time."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait_exit(timeout)

    def kill(self) -> None:
        """SIGKILL, no chance to clean up."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()
            self._join()
            self.exit_codes.append(self.proc.returncode)

    def close(self) -> None:
        self.kill()
        with _LIVE_LOCK:
            if self in _LIVE:
                _LIVE.remove(self)

    # output ------------------------------------------------------------------------------------
    def tail(self, n: int = 80) -> str:
        """The last n stderr lines, runs of the same message (ignoring its time) collapsed into one."""
        collapsed: list[list] = []  # [line, key, repeats]
        for line in self._tail:
            k = re.sub(r'"time":"[^"]*",?', "", line)
            if collapsed and collapsed[-1][1] == k:
                collapsed[-1][0] = line
                collapsed[-1][2] += 1
            else:
                collapsed.append([line, k, 1])
        out = [line if rep == 1 else f"{line}   [x{rep}, last one shown]" for line, _, rep in collapsed[-n:]]
        return f"--- last stderr lines of {self.name} ({self.log_path}) ---\n" + "\n".join(out)

    def stderr_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stdout_text(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    # CLI ---------------------------------------------------------------------------------------
    def cli(self, *args: str, timeout: float = 60, env: dict | None = None) -> subprocess.CompletedProcess:
        """Runs `pulsegate <args> --config <this config>`."""
        return run_cli(self.binary, *args, "--config", str(self.config_path), timeout=timeout,
                       env=self._env(env), cwd=self.workdir)

    # HTTP --------------------------------------------------------------------------------------
    def post(self, body: bytes, key: ApiKey | None, content_type: str = "application/x-ndjson",
             timeout: float = 60, session: requests.Session | None = None,
             headers: dict | None = None) -> requests.Response:
        h = {"Content-Type": content_type}
        if key is not None:
            h["Authorization"] = f"Bearer {key.key}"
        h.update(headers or {})
        s = session or http_session()
        return s.post(self.url("/v1/samples"), data=body, headers=h, timeout=timeout)

    def post_samples(self, samples: list[dict], key: ApiKey, fmt: str = "ndjson", **kw) -> requests.Response:
        if fmt == "ndjson":
            return self.post(ndjson(samples), key, "application/x-ndjson", **kw)
        return self.post(json.dumps(samples).encode(), key, "application/json", **kw)

    def accept(self, samples: list[dict], key: ApiKey, fmt: str = "ndjson") -> list[str]:
        """Posts samples that must all be accepted and returns their ids."""
        r = self.post_samples(samples, key, fmt)
        assert r.status_code == 200, f"POST /v1/samples: {r.status_code} {r.text[:500]}"
        body = r.json()
        assert body.get("accepted") == len(samples), f"not all accepted: {json.dumps(body)[:1000]}"
        assert body.get("rejected") == [], f"rejections: {json.dumps(body)[:1000]}"
        ids = body.get("ids")
        assert isinstance(ids, list) and len(ids) == len(samples), f"ids: {body}"
        assert all(isinstance(i, str) and UUID_V8_RE.match(i) for i in ids), f"bad ids: {ids[:5]}"
        return ids

    def get(self, path: str, timeout: float = 10) -> requests.Response:
        return http_session().get(self.url(path), timeout=timeout)

    def metrics(self) -> list[tuple[str, dict, float]]:
        r = self.get("/metrics")
        assert r.status_code == 200, f"/metrics: {r.status_code} {r.text[:300]}"
        return parse_metrics(r.text)


def run_cli(binary: Path, *args: str, timeout: float = 60, env: dict | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    return _exec_retrying(lambda: subprocess.run(
        [str(binary), *args], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, env=env,
        cwd=str(cwd) if cwd else None))


def cli_result(p: subprocess.CompletedProcess) -> str:
    return f"exit {p.returncode}\n--- stdout ---\n{p.stdout[-3000:]}\n--- stderr ---\n{p.stderr[-3000:]}"


# --------------------------------------------------------------------------------------------------
# Prometheus text

_METRIC_LINE = re.compile(
    r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})?\s+'
    r'([-+]?(?:[0-9.eE+-]+|NaN|Inf|\+Inf|-Inf))(\s+-?[0-9]+)?$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> list[tuple[str, dict, float]]:
    """Parses Prometheus text exposition; fails on a line that is not valid."""
    out = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = _METRIC_LINE.match(line.strip())
        assert m, f"not a Prometheus sample line: {line!r}"
        labels = dict(_LABEL.findall(m.group(2) or ""))
        out.append((m.group(1), labels, float(m.group(3))))
    return out


def metric_series(metrics, pred: Callable[[str], bool]) -> list[tuple[str, dict, float]]:
    return [m for m in metrics if pred(m[0])]


def outbox_depth(daemon: Daemon) -> float | None:
    """The outbox depth from /metrics: the largest series whose name has 'outbox' and 'depth'."""
    series = metric_series(daemon.metrics(), lambda n: n.startswith("pulsegate_") and "outbox" in n
                           and "depth" in n)
    if not series:
        return None
    return max(v for _, _, v in series)


# --------------------------------------------------------------------------------------------------
# the file sink


class FileSinkReader:
    """Reads `samples*.ndjson` in a directory incrementally (only complete lines) while the daemon runs."""

    def __init__(self, directory: Path, pattern: str = "samples*.ndjson"):
        self.directory = Path(directory)
        self.pattern = pattern
        self._offsets: dict[tuple[str, int], int] = {}
        self.ids: set[str] = set()

    def poll(self) -> set[str]:
        for path in sorted(self.directory.glob(self.pattern)):
            try:
                with open(path, "rb") as f:
                    st = os.fstat(f.fileno())
                    key = (path.name, st.st_ino)
                    off = self._offsets.get(key, 0)
                    if st.st_size < off:
                        off = 0
                    f.seek(off)
                    data = f.read()
            except FileNotFoundError:
                continue
            end = data.rfind(b"\n")
            if end < 0:
                continue
            for line in data[: end + 1].split(b"\n")[:-1]:
                try:
                    obj = json.loads(line)
                    self.ids.add(obj["id"])
                except (ValueError, KeyError, TypeError):
                    pass  # judged by read_file_sink() on a quiet daemon
            self._offsets[key] = off + end + 1
        return self.ids


def read_file_sink(directory: Path, pattern: str = "samples*.ndjson"):
    """Full read of every file sink file: (id -> sample, id -> raw line, line count, corrupt lines).

    A last line without its newline is a write in progress (or a torn write awaiting the restart that
    cuts it) and is ignored; a complete line that is not a JSON sample is corruption.
    """
    samples: dict[str, dict] = {}
    raw: dict[str, bytes] = {}
    count = 0
    corrupt: list[str] = []
    for path in sorted(Path(directory).glob(pattern)):
        data = path.read_bytes()
        end = data.rfind(b"\n")
        for n, line in enumerate(data[: end + 1].split(b"\n")[:-1]):
            try:
                obj = json.loads(line)
                sid = obj["id"]
                assert isinstance(sid, str)
            except (ValueError, KeyError, TypeError, AssertionError):
                corrupt.append(f"{path.name}:{n + 1}: {line[:200]!r}")
                continue
            samples[sid] = obj
            raw[sid] = line
            count += 1
    return samples, raw, count, corrupt


# --------------------------------------------------------------------------------------------------
# the HTTP sink receiver


class SinkReceiver:
    """An HTTP endpoint standing in for the platform's ingest service.

    Verifies every request against the README's wire format (HMAC signature over `<ts>.<body>`,
    headers, NDJSON lines); every violation is recorded in `errors` and fails the test through
    `assert_ok()` (called by the waits and by the fixture's teardown).

    mode: "ok" (store, 200), "400" (poison answer), "503" (Retry-After: 1), "garbage" (bytes that are
    not HTTP, then close). `stop()` really closes the listening socket (connections are refused);
    `start()` listens again on the same port. Answers are HTTP/1.0, so no connection outlives a request.
    """

    def __init__(self, secret: bytes | None = None, path: str = "/ingest"):
        self.secret = secret or ("e2e-hmac-" + secrets.token_hex(12)).encode()
        self.path = path
        self.port = free_port()
        self.mode = "ok"
        self.delay = 0.0
        self.lock = threading.Lock()
        self.ids: set[str] = set()
        self.samples: dict[str, dict] = {}
        self.raw: dict[str, bytes] = {}
        self.lines_stored = 0
        self.requests = 0
        self.probes = 0
        self.incomplete = 0
        self.attempts: list[tuple[str, str, int]] = []   # (batch id, mode, sample count)
        self.batch_ids_by_mode: dict[str, list[str]] = collections.defaultdict(list)
        self.rejected_ids: set[str] = set()              # sample ids in batches answered 400
        self.errors: list[str] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def start(self) -> None:
        assert self._server is None, "receiver already running"
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                receiver._handle(self)

            def _probe(self):
                # a health probe (doctor, /readyz) that is not a delivery: answer, count, judge nothing
                with receiver.lock:
                    receiver.probes += 1
                self.send_response(200 if receiver.mode == "ok" else 503)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_HEAD = do_OPTIONS = _probe

        deadline = time.monotonic() + 10
        while True:
            try:
                server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._server = None
        assert port_refuses(self.port), "receiver port still accepts connections after stop()"

    def close(self) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    def _error(self, msg: str) -> None:
        with self.lock:
            self.errors.append(msg)

    def assert_ok(self) -> None:
        with self.lock:
            errors = list(self.errors)
        assert not errors, "HTTP sink receiver saw wire-format violations:\n" + "\n".join(errors[:20])

    def _read_body(self, h: BaseHTTPRequestHandler) -> bytes | None:
        te = (h.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            chunks = []
            while True:
                size_line = h.rfile.readline()
                if not size_line:
                    return None
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunk = h.rfile.read(size)
                if len(chunk) < size:
                    return None
                chunks.append(chunk)
                h.rfile.readline()
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        if len(body) < length:
            return None
        return body


    @staticmethod
    def _json_reply(h, status: int, payload: bytes) -> None:
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        h.wfile.write(payload)
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        mode, delay = self.mode, self.delay
        try:
            body = self._read_body(h)
        except (OSError, ValueError):
            body = None
        if body is None:  # the daemon went away mid-request (SIGKILL): not a wire-format error
            with self.lock:
                self.incomplete += 1
            return
        with self.lock:
            self.requests += 1
        problems = []
        if h.path != self.path:
            problems.append(f"path {h.path!r}, expected {self.path!r}")
        ctype = h.headers.get("Content-Type") or ""
        if not ctype.startswith("application/x-ndjson"):
            problems.append(f"Content-Type {ctype!r}")
        ts = h.headers.get("Pulsegate-Timestamp")
        sig = h.headers.get("Pulsegate-Signature")
        batch_id = h.headers.get("Pulsegate-Batch-Id") or ""
        if ts is None or sig is None:
            problems.append(f"missing signature headers (timestamp={ts!r}, signature={sig!r})")
        else:
            mac = hmac.new(self.secret, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest("v1=" + mac, sig):
                problems.append(f"BAD SIGNATURE batch={batch_id} ts={ts} sig={sig}")
            try:
                if abs(time.time() - int(ts)) > 300:
                    problems.append(f"Pulsegate-Timestamp {ts} is more than 5 minutes off")
            except ValueError:
                problems.append(f"Pulsegate-Timestamp {ts!r} is not Unix seconds")
        try:
            uuid.UUID(batch_id)
        except ValueError:
            problems.append(f"Pulsegate-Batch-Id {batch_id!r} is not a UUID")
        if h.headers.get("Pulsegate-Schema") != "1":
            problems.append(f"Pulsegate-Schema {h.headers.get('Pulsegate-Schema')!r}")
        if body and not body.endswith(b"\n"):
            problems.append("body does not end with a newline")
        lines = body.split(b"\n")[:-1] if body.endswith(b"\n") else body.split(b"\n")
        if h.headers.get("Pulsegate-Sample-Count") != str(len(lines)):
            problems.append(f"Pulsegate-Sample-Count {h.headers.get('Pulsegate-Sample-Count')!r} "
                            f"but {len(lines)} lines")
        if not lines:
            problems.append("empty batch")
        parsed = []
        for line in lines:
            try:
                obj = json.loads(line)
                assert isinstance(obj, dict) and isinstance(obj.get("id"), str) and obj.get("v") == 1
                parsed.append((obj, line))
            except (ValueError, AssertionError):
                problems.append(f"line is not a v1 sample: {line[:200]!r}")
        if problems:
            self._error(f"batch {batch_id}: " + "; ".join(problems))
            h.send_response(401 if any("SIGNATURE" in p for p in problems) else 400)
            h.end_headers()
            return
        if delay:
            time.sleep(delay)
        with self.lock:
            self.attempts.append((batch_id, mode, len(parsed)))
            self.batch_ids_by_mode[mode].append(batch_id)
            if mode == "ok":
                for obj, line in parsed:
                    self.ids.add(obj["id"])
                    self.samples[obj["id"]] = obj
                    self.raw[obj["id"]] = line
                self.lines_stored += len(parsed)
            elif mode == "400":
                self.rejected_ids.update(obj["id"] for obj, _ in parsed)
        if mode == "ok":
            self._json_reply(h, 200, b'{"stored":true}')
        elif mode == "400":
            self._json_reply(h, 400, b'{"error":"e2e receiver rejects this batch"}')
        elif mode == "503":
            h.send_response(503)
            h.send_header("Retry-After", "1")
            h.send_header("Content-Length", "0")
            h.end_headers()
        elif mode == "garbage":
            h.wfile.write(b"\x16\x03\x01\x00\xa5garbage \xff\xfe not an HTTP answer\x00\r\n\r\n\x00\x01")
            h.wfile.flush()
            h.close_connection = True
        else:
            raise AssertionError(f"unknown receiver mode {mode}")

    # waits -------------------------------------------------------------------------------------
    def snapshot_ids(self) -> set[str]:
        with self.lock:
            return set(self.ids)

    def missing(self, expected: Iterable[str]) -> set[str]:
        with self.lock:
            return {i for i in expected if i not in self.ids}

    def wait_for(self, expected: Iterable[str], timeout: float = 120, daemon: Daemon | None = None) -> None:
        expected = set(expected)

        def done():
            self.assert_ok()
            if daemon is not None and not daemon.alive():
                raise AssertionError(f"daemon exited ({daemon.proc.returncode}) while waiting for delivery\n"
                                     + daemon.tail(60))
            return not self.missing(expected)

        wait_until(done, timeout, 0.2, lambda: f"HTTP sink still misses {len(self.missing(expected))} of "
                                                f"{len(expected)} ids (has {len(self.ids)})")


def wait_file_sink(directory: Path, expected: Iterable[str], timeout: float = 120,
                   daemon: Daemon | None = None, reader: FileSinkReader | None = None) -> FileSinkReader:
    expected = set(expected)
    reader = reader or FileSinkReader(directory)

    def done():
        if daemon is not None and not daemon.alive():
            raise AssertionError(f"daemon exited ({daemon.proc.returncode}) while waiting for the file sink\n"
                                 + daemon.tail(60))
        return expected <= reader.poll()

    wait_until(done, timeout, 0.3, lambda: f"file sink still misses {len(expected - reader.ids)} of "
                                            f"{len(expected)} ids (has {len(reader.ids)})")
    return reader


def dead_letter_entries(output: str) -> list:
    """The list of dead letters from `outbox dead-letters --json` (a list, or an object holding one)."""
    data = json.loads(output)
    if isinstance(data, list):
        return data
    assert isinstance(data, dict), f"dead-letters --json is neither a list nor an object: {output[:500]}"
    lists = [v for v in data.values() if isinstance(v, list)]
    assert len(lists) == 1, f"cannot find the dead letter list in: {output[:500]}"
    return lists[0]


def is_finite_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
