"""What every vendor emulator shares: the HTTP server, the OAuth 2.0 authorization-code flow with its
consent page, the token store and its refresh-token rotation model, fault injection, rate-limit
windows, webhook delivery with retries, and the /_emulator control API.

A vendor module subclasses `Emulator`, sets its class attributes (paths, scopes, client
authentication, token lifetimes) and overrides the hooks that shape answers the vendor's way
(`token_error`, `token_body`, `unauthorized`, ...). Everything here is thread-safe: one re-entrant
lock guards the emulator's state, and nothing slow (sleeps, outgoing HTTP) runs while it is held.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import html
import http.client
import json
import random
import re
import secrets
import ssl
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit, urlunsplit

# --------------------------------------------------------------------------------------------------
# small helpers


def iso_z(t: float) -> str:
    """RFC 3339 in UTC with a Z, whole seconds: 2026-01-01T10:00:00Z."""
    return datetime.fromtimestamp(int(t), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_offset(t: float, offset_s: int = 0) -> str:
    """ISO 8601 local time with a numeric offset: 2026-01-01T11:00:00+01:00."""
    sign = "+" if offset_s >= 0 else "-"
    hh, mm = divmod(abs(offset_s) // 60, 60)
    local = datetime.fromtimestamp(int(t) + offset_s, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{local}{sign}{hh:02d}:{mm:02d}"


def parse_iso(value: str) -> float:
    """Parses an ISO 8601 / RFC 3339 timestamp (Z or offset; no offset means UTC) to Unix seconds."""
    v = value.strip()
    if v.endswith("Z") or v.endswith("z"):
        v = v[:-1] + "+00:00"
    dt = datetime.fromisoformat(v)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def compact(obj: Any, sort_keys: bool = False) -> bytes:
    """The exact bytes a vendor sends: compact JSON, UTF-8, no trailing newline."""
    return json.dumps(obj, separators=(",", ":"), sort_keys=sort_keys, ensure_ascii=False).encode()


def http_request(method: str, url: str, body: bytes | None = None, headers: dict | None = None,
                 timeout: float = 10.0, verify_tls: bool = True) -> tuple[int, dict, bytes]:
    """One HTTP exchange with http.client (no proxies, no redirects followed: we talk to loopback and
    must see the vendor-level answer exactly). Returns (status, lower-cased headers, body)."""
    parts = urlsplit(url)
    path = urlunsplit(("", "", parts.path or "/", parts.query, ""))
    if parts.scheme == "https":
        ctx = ssl.create_default_context() if verify_tls else ssl._create_unverified_context()
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname, parts.port or 443, timeout=timeout, context=ctx)
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def add_query(url: str, params: list[tuple[str, str]]) -> str:
    """Appends query parameters to a URL that may already have some."""
    parts = urlsplit(url)
    q = parts.query + ("&" if parts.query else "") + urlencode(params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, q, parts.fragment))


def seeded_rng(*parts: Any) -> random.Random:
    """A Random whose sequence depends only on `parts` (seed, vendor, object id): generated data is the
    same whatever order the objects are created or read in."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


# --------------------------------------------------------------------------------------------------
# requests and responses


class Request:
    """One parsed request as the route handlers see it."""

    def __init__(self, handler: BaseHTTPRequestHandler, body: bytes):
        self.handler = handler
        self.method = handler.command
        parts = urlsplit(handler.path)
        self.path = parts.path
        self.query = parse_qs(parts.query, keep_blank_values=True)
        self.headers = handler.headers
        self.body = body
        self.params: dict[str, str] = {}

    def q(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def form(self) -> dict[str, str]:
        """Form fields of an x-www-form-urlencoded body (first value of each), merged over the query
        string, as OAuth servers usually accept both."""
        out = {k: v[0] for k, v in self.query.items()}
        ctype = (self.headers.get("Content-Type") or "").lower()
        if self.body and "json" not in ctype:
            out.update({k: v[0] for k, v in parse_qs(self.body.decode("utf-8", "replace"),
                                                    keep_blank_values=True).items()})
        return out

    def form_multi(self) -> dict[str, list[str]]:
        """All values of every form field (checkbox groups)."""
        return parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)

    def json(self) -> Any:
        if not self.body:
            return {}
        try:
            return json.loads(self.body)
        except ValueError:
            raise ApiError(json_response(400, {"error": "body is not JSON"}))

    def bearer(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        scheme, _, value = auth.partition(" ")
        return value.strip() if scheme.lower() == "bearer" and value.strip() else None

    def basic(self) -> tuple[str, str] | None:
        auth = self.headers.get("Authorization") or ""
        scheme, _, value = auth.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return (user, password) if sep else None


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    drop: bool = False          # close the connection without answering (a transient network fault)
    delay_s: float = 0.0        # sleep this long before answering (hold_token_response_s)


class ApiError(Exception):
    """Raised by handlers to answer with a prepared error response."""

    def __init__(self, response: Response):
        super().__init__(response.status)
        self.response = response


def json_response(status: int, obj: Any, headers: Iterable[tuple[str, str]] = ()) -> Response:
    return Response(status, json.dumps(obj).encode(), [("Content-Type", "application/json; charset=utf-8"),
                                                      *headers])


def html_response(status: int, text: str) -> Response:
    return Response(status, text.encode(), [("Content-Type", "text/html; charset=utf-8")])


def redirect(location: str) -> Response:
    return Response(302, b"", [("Location", location)])


@dataclass
class Route:
    method: str
    template: str               # "/api/v3/activities/{id}"; also the request-log key
    handler: Callable[[Request], Response]
    control: bool = False       # /_emulator/...: never faulted, never rate limited
    api: bool = False           # a vendor data endpoint: rate limited and given rate-limit headers
    regex: re.Pattern = field(init=False)

    def __post_init__(self):
        pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.template))
        self.regex = re.compile(f"^{pattern}$")


# --------------------------------------------------------------------------------------------------
# OAuth records


@dataclass
class User:
    id: Any
    name: str
    utc_offset_s: int = 0
    tokens_issued: int = 0      # access tokens handed out (code exchanges and refreshes)
    refreshes: int = 0          # refresh grants served
    refresh_reuse: int = 0      # dead refresh tokens presented again
    refresh_retries: int = 0    # superseded refresh tokens accepted within the grace rule
    revocations: int = 0
    locked_out: bool = False
    extra: dict = field(default_factory=dict)   # vendor-specific (Polar registration, Oura profile)

    def summary(self) -> dict:
        return {"id": self.id, "name": self.name, "tokens_issued": self.tokens_issued,
                "refreshes": self.refreshes, "refresh_reuse": self.refresh_reuse,
                "refresh_retries": self.refresh_retries, "revocations": self.revocations,
                "locked_out": self.locked_out, **self.extra}


@dataclass
class Grant:
    """One consent of one user to the client: the family every token of that consent belongs to."""
    id: int
    user: Any
    client_id: str
    scopes: list[str]
    revoked: bool = False
    latest_access: AccessToken | None = None


@dataclass
class Code:
    code: str
    client_id: str
    redirect_uri: str
    redirect_uri_sent: bool
    user: Any
    scopes: list[str]
    code_challenge: str | None
    code_challenge_method: str | None
    expires_at: float
    offline: bool               # Google access_type=offline: a refresh token is issued
    used: bool = False
    grant: Grant | None = None


@dataclass
class AccessToken:
    token: str
    grant: Grant
    expires_at: float
    parent_refresh: str | None  # the refresh token this one replaced (for the grace rule)
    used: bool = False


@dataclass
class RefreshToken:
    token: str
    grant: Grant
    state: str = "active"       # active | grace (superseded, successor unused) | dead
    parent: str | None = None   # the refresh token this one replaced
    child: str | None = None    # the refresh token that replaced this one


@dataclass
class PendingAuthorization:
    """An authorize request waiting for the consent page's decision."""
    client_id: str
    redirect_uri: str
    redirect_uri_sent: bool
    state: str | None
    scopes: list[str]
    code_challenge: str | None
    code_challenge_method: str | None
    offline: bool
    expires_at: float


# --------------------------------------------------------------------------------------------------
# rate-limit windows


class RateWindows:
    """Fixed windows aligned to the Unix epoch, so 900 s windows start at :00/:15/:30/:45 and 86400 s
    windows at midnight UTC (Strava's rule; the others document no alignment and this is close enough).
    Every request counts in every window, also when a window is already over its limit."""

    def __init__(self):
        self._counts: dict[tuple[Any, int], tuple[int, int]] = {}   # (key, seconds) -> (window start, n)

    def hit(self, key: Any, seconds_list: Iterable[int], now: float, count: bool = True) -> list[tuple[int, float]]:
        """Counts one request; returns (usage, seconds until the window resets) per window."""
        out = []
        for seconds in seconds_list:
            start = int(now // seconds) * seconds
            w_start, n = self._counts.get((key, seconds), (start, 0))
            if w_start != start:
                n = 0
            if count:
                n += 1
            self._counts[(key, seconds)] = (start, n)
            out.append((n, start + seconds - now))
        return out


# --------------------------------------------------------------------------------------------------
# the consent form, parsed the way a browser sees it


class _FormParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.action: str | None = None
        self.method = "get"
        self.fields: list[dict] = []      # inputs: name, type, value, checked
        self.buttons: list[dict] = []     # name, value, text
        self._button: dict | None = None
        self._in_form = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and self.action is None:
            self.action = a.get("action") or ""
            self.method = (a.get("method") or "get").lower()
            self._in_form = True
        elif not self._in_form:
            return
        elif tag == "input":
            self.fields.append({"name": a.get("name"), "type": (a.get("type") or "text").lower(),
                                "value": a.get("value") or "", "checked": "checked" in a})
        elif tag == "button":
            self._button = {"name": a.get("name"), "value": a.get("value") or "", "text": "",
                            "type": (a.get("type") or "submit").lower()}

    def handle_data(self, data):
        if self._button is not None:
            self._button["text"] += data

    def handle_endtag(self, tag):
        if tag == "button" and self._button is not None:
            self.buttons.append(self._button)
            self._button = None
        elif tag == "form":
            self._in_form = False


# --------------------------------------------------------------------------------------------------
# the emulator


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 with Content-Length on every answer: clients keep connections alive as with a real API.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; without TCP_NODELAY the second one waits for the
    # client's delayed ACK (~40 ms a request on a kept-alive connection).
    disable_nagle_algorithm = True

    def log_message(self, *args):  # the request log lives in the emulator's state
        pass

    def _dispatch(self):
        self.server.emulator._dispatch(self)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _dispatch


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512     # a load test opens many connections at once

    def handle_error(self, request, client_address):
        # A client that goes away mid-connection (a SIGKILLed daemon's keep-alive sockets) is what the
        # fault tests do on purpose; anything else is still printed.
        import sys
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


class Emulator:
    """Base class of the vendor emulators. See the package README for the control API."""

    vendor = ""
    display_name = ""
    server_header = "emulator"
    scope_separator = " "
    scopes_supported: tuple[str, ...] = ()
    default_scopes: tuple[str, ...] = ()        # granted when the authorize request names none
    authorize_path = "/oauth/authorize"
    token_path = "/oauth/token"
    client_auth_methods: tuple[str, ...] = ("body",)    # "body" and/or "basic"
    supports_pkce = False
    token_requires_redirect_uri = False         # at the code exchange, even if the authorize had it
    issues_refresh_tokens = True
    user_id_type: type = str
    default_user_id: Any = "user-1"
    redirect_includes_scope = False             # Strava and Google echo the granted scopes

    # Options every emulator has; a vendor's VENDOR_DEFAULTS add to and override these.
    COMMON_DEFAULTS: dict[str, Any] = {
        "access_ttl_s": 3600,
        "code_ttl_s": 600,
        "rotate_refresh_tokens": True,
        "previous_refresh_valid_until_used": True,
        "lockout_on_reuse": True,          # only in strict mode (previous_refresh_valid_until_used off)
        "refresh_fail_rate": 0.0,
        "refresh_fail_modes": ["500", "503", "drop"],
        "hold_token_response_s": 0.0,
        "down": False,
        "rate_limited": False,
        "retry_after_s": None,             # None: no Retry-After header on 429 (none is documented)
        "silent": False,
        "webhook_attempts": 3,
        "webhook_timeout_s": 5.0,
        "webhook_retry_delay_s": 0.2,
        "webhook_verify_tls": True,
        "auto_create_users": True,
        "redirect_uri_prefixes": None,     # None: any http(s) redirect_uri is accepted
    }
    VENDOR_DEFAULTS: dict[str, Any] = {}

    def __init__(self, webhook_url: str | None = None, client_id: str = "emulator-client",
                 client_secret: str = "emulator-secret", seed: int = 0, host: str = "127.0.0.1",
                 port: int = 0, **options):
        self.client_id = str(client_id)
        self.client_secret = str(client_secret)
        self.seed = seed
        self.webhook_url = webhook_url
        self.lock = threading.RLock()
        self.config: dict[str, Any] = {**self.COMMON_DEFAULTS, **self.VENDOR_DEFAULTS}
        self.configure(**options)
        self._fault_rng = random.Random(f"{seed}:{self.vendor}:faults")
        self._clock_offset = 0.0
        self.users: dict[Any, User] = {}
        self._next_user = 0
        self._next_grant = 0
        self.codes: dict[str, Code] = {}
        self.pending: dict[str, PendingAuthorization] = {}
        self.access_tokens: dict[str, AccessToken] = {}
        self.refresh_tokens: dict[str, RefreshToken] = {}
        self.user_grants: dict[Any, list[Grant]] = collections.defaultdict(list)
        self.revocations: collections.deque = collections.deque(maxlen=1000)
        self.revocation_count = 0
        self.refreshes_served = 0
        self.request_counts: collections.Counter = collections.Counter()
        self.webhook_log: collections.deque = collections.deque(maxlen=500)
        self.webhook_totals = collections.Counter()
        self.rate = RateWindows()
        self._routes: list[Route] = []
        self._register_common_routes()
        self.register_routes()
        self.create_user(self.default_user_id)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._host = host
        self._port = port

    # ---------------------------------------------------------------------------------------- lifecycle

    def start(self) -> "Emulator":
        server = _Server((self._host, self._port), _Handler)
        server.emulator = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"{self.vendor}-emulator", daemon=True)
        self._thread.start()
        if self.webhook_url:
            with self.lock:
                self.preprovision_webhook(self.webhook_url)
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._server = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def urls(self) -> dict[str, str]:
        """The URLs to put in the daemon's config for this vendor (see each vendor's override)."""
        return {"authorize": self.url(self.authorize_path), "token": self.url(self.token_path)}

    # ------------------------------------------------------------------------------------------- config

    def configure(self, **options) -> dict:
        unknown = sorted(set(options) - set(self.config))
        if unknown:
            raise ValueError(f"unknown {self.vendor} emulator option(s): {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(self.config))}")
        with self.lock:
            self.config.update(options)
            return dict(self.config)

    def opt(self, name: str) -> Any:
        return self.config[name]

    def now(self) -> float:
        """The emulator's clock: wall time plus what advance_clock() added (token and code expiry,
        rate-limit windows, subscription expiry and generated timestamps all use it; signature
        timestamps use the wall clock, as receivers check them against theirs)."""
        return time.time() + self._clock_offset

    def advance_clock(self, seconds: float) -> float:
        with self.lock:
            self._clock_offset += seconds
            return self._clock_offset

    # -------------------------------------------------------------------------------------------- users

    def user_key(self, value: Any) -> Any:
        """A user id as this vendor types it (int for Strava and Polar, str for the others)."""
        try:
            return self.user_id_type(value)
        except (TypeError, ValueError):
            raise ApiError(json_response(400, {"error": f"not a {self.vendor} user id: {value!r}"}))

    def new_user_id(self) -> Any:
        """The next generated user id (vendors override for their id shape)."""
        self._next_user += 1
        return f"{self.vendor}-user-{self._next_user:06d}"

    def create_user(self, user_id: Any = None, name: str | None = None, utc_offset_s: int = 0, **extra) -> User:
        with self.lock:
            if user_id is None:
                user_id = self.new_user_id()
                while self.user_key(user_id) in self.users:
                    user_id = self.new_user_id()
            key = self.user_key(user_id)
            if key in self.users:
                raise ApiError(json_response(409, {"error": f"user {key} exists"}))
            user = User(key, name or f"User {key}", int(utc_offset_s), extra=dict(extra))
            self.users[key] = user
            return user

    def create_users(self, count: int) -> list[Any]:
        return [self.create_user().id for _ in range(int(count))]

    def get_user(self, user_id: Any) -> User:
        key = self.user_key(user_id)
        with self.lock:
            user = self.users.get(key)
        if user is None:
            raise ApiError(json_response(404, {"error": f"no {self.vendor} user {key}"}))
        return user

    def revoke_user(self, user_id: Any, via: str = "user") -> int:
        """The user withdraws the app's access at the vendor's site: every grant is revoked. Returns the
        number of grants revoked. Vendors that notify about it (Strava) override to send the event."""
        user = self.get_user(user_id)
        with self.lock:
            n = 0
            for g in self.user_grants[user.id]:
                if not g.revoked:
                    self._revoke_grant(g, via)
                    n += 1
            return n

    # ----------------------------------------------------------------------------------------- routing

    def route(self, method: str, template: str, handler: Callable[[Request], Response], *,
              control: bool = False, api: bool = False) -> None:
        self._routes.append(Route(method, template, handler, control=control, api=api))

    def register_routes(self) -> None:
        """Vendor hook: add the vendor's routes with self.route(...)."""
        raise NotImplementedError

    def _register_common_routes(self) -> None:
        r = self.route
        r("GET", self.authorize_path, self._authorize_get)
        r("POST", self.authorize_path + "/decision", self._authorize_decision)
        r("POST", self.token_path, self._token)
        r("GET", "/_emulator/state", self._ctl_state, control=True)
        r("POST", "/_emulator/config", self._ctl_config, control=True)
        r("POST", "/_emulator/users", self._ctl_users, control=True)
        r("POST", "/_emulator/users/{user}/revoke", self._ctl_revoke_user, control=True)
        r("POST", "/_emulator/clock", self._ctl_clock, control=True)
        r("POST", "/_emulator/webhooks/send", self._ctl_send_webhook, control=True)

    def _match(self, method: str, path: str) -> tuple[Route | None, dict, bool]:
        """(route, params, path_known); path_known tells 405 from 404."""
        path_known = False
        for route in self._routes:
            m = route.regex.match(path)
            if m:
                path_known = True
                if route.method == method or (method == "HEAD" and route.method == "GET"):
                    return route, m.groupdict(), True
        return None, {}, path_known

    def _read_body(self, h: BaseHTTPRequestHandler) -> bytes:
        if "chunked" in (h.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(h.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(h.rfile.read(size))
                h.rfile.readline()
        length = int(h.headers.get("Content-Length") or 0)
        return h.rfile.read(length) if length > 0 else b""

    def _dispatch(self, h: BaseHTTPRequestHandler) -> None:
        body = self._read_body(h)
        req = Request(h, body)
        route, params, path_known = self._match(req.method, req.path)
        req.params = params
        try:
            if route is None:
                with self.lock:
                    self.request_counts[f"{req.method} <unmatched>"] += 1
                resp = self.not_found(req) if not path_known else json_response(405, {"error": "method not allowed"})
            else:
                with self.lock:
                    self.request_counts[f"{route.method} {route.template}"] += 1
                resp = self._serve(route, req)
        except ApiError as e:
            resp = e.response
        except Exception:  # a bug in the emulator: answer 500 and show it on stderr
            traceback.print_exc(file=sys.stderr)
            resp = json_response(500, {"error": "emulator error", "trace": traceback.format_exc()[-2000:]})
        self._write(h, req, resp)

    def _serve(self, route: Route, req: Request) -> Response:
        if not route.control:
            if self.opt("down"):
                return self.server_error(req, 500)
            if self.opt("rate_limited"):
                return self.too_many_requests(req, route)
        if route.api:
            limited = self.check_rate_limit(req, route)
            if limited is not None:
                return limited
        try:
            resp = route.handler(req)
        except ApiError as e:
            resp = e.response
        if route.api:
            resp.headers.extend(self.rate_limit_headers(req, route))
        return resp

    def _write(self, h: BaseHTTPRequestHandler, req: Request, resp: Response) -> None:
        if resp.delay_s > 0:
            time.sleep(resp.delay_s)
        if resp.drop:
            h.close_connection = True
            return
        try:
            h.server_version, h.sys_version = self.server_header, ""   # send_response writes Server
            h.send_response(resp.status)
            names = {k.lower() for k, _ in resp.headers}
            for k, v in resp.headers:
                h.send_header(k, v)
            if "content-type" not in names and resp.body:
                h.send_header("Content-Type", "application/json; charset=utf-8")
            h.send_header("Content-Length", str(len(resp.body)))
            h.end_headers()
            if req.method != "HEAD":
                h.wfile.write(resp.body)
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True

    # -------------------------------------------------------------------------- answers (vendor hooks)

    def not_found(self, req: Request) -> Response:
        return json_response(404, {"error": "not found", "path": req.path})

    def server_error(self, req: Request | None, status: int) -> Response:
        return json_response(status, {"error": "server_error"})

    def too_many_requests(self, req: Request, route: Route | None) -> Response:
        return json_response(429, {"error": "rate limit exceeded"}, self.retry_after_headers())

    def retry_after_headers(self) -> list[tuple[str, str]]:
        ra = self.opt("retry_after_s")
        return [("Retry-After", str(int(ra)))] if ra is not None else []

    def check_rate_limit(self, req: Request, route: Route) -> Response | None:
        """Vendor hook: count the request and answer 429 when a window is over its limit."""
        return None

    def rate_limit_headers(self, req: Request, route: Route) -> list[tuple[str, str]]:
        """Vendor hook: the rate-limit headers every API answer carries."""
        return []

    def token_error(self, error: str, status: int = 400, description: str | None = None,
                    field_name: str | None = None) -> Response:
        """An RFC 6749 §5.2 error; vendors with another shape override. `field_name` names what was
        wrong (client_id, client_secret, code, refresh_token) for vendors whose errors say so."""
        body = {"error": error}
        if description:
            body["error_description"] = description
        headers = [("WWW-Authenticate", 'Basic realm="oauth"')] if status == 401 else []
        return json_response(status, body, [("Cache-Control", "no-store"), *headers])

    def token_body(self, grant: Grant, access: AccessToken, refresh: RefreshToken | None,
                   exchange: bool) -> dict:
        """The token endpoint's success body (RFC 6749 §5.1); vendors override for their shape."""
        body = {"access_token": access.token, "token_type": "Bearer",
                "expires_in": int(round(access.expires_at - self.now()))}
        if refresh is not None:
            body["refresh_token"] = refresh.token
        return body

    def unauthorized(self, req: Request, reason: str) -> Response:
        """A data endpoint called without a valid access token."""
        return json_response(401, {"error": "invalid_token", "error_description": reason},
                             [("WWW-Authenticate", 'Bearer error="invalid_token"')])

    def insufficient_scope(self, req: Request, needed: Iterable[str]) -> Response:
        return json_response(403, {"error": "insufficient_scope", "scope": " ".join(needed)})

    def new_token(self, kind: str) -> str:
        """kind: code | access | refresh. Vendors override for their token look."""
        return secrets.token_hex(20)

    # ------------------------------------------------------------------------------------- authorize

    def _authorize_error_page(self, status: int, message: str) -> Response:
        return html_response(status, f"<!doctype html><html><head><title>{html.escape(self.display_name)}"
                                     f" – authorization error</title></head><body><h1>Authorization error"
                                     f"</h1><p id=\"error\">{html.escape(message)}</p></body></html>")

    def parse_scopes(self, value: str | None) -> list[str]:
        if value is None:
            return []
        seps = "," if self.scope_separator == "," else " "
        return [s for s in re.split(f"[{re.escape(seps)}]+", value.strip()) if s]

    def _redirect_allowed(self, uri: str) -> bool:
        parts = urlsplit(uri)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
            return False
        prefixes = self.opt("redirect_uri_prefixes")
        return not prefixes or any(uri.startswith(p) for p in prefixes)

    def _authorize_get(self, req: Request) -> Response:
        client_id = req.q("client_id")
        # Polar lets the client leave out redirect_uri and uses the one registered for the app.
        redirect_uri = req.q("redirect_uri") or self.config.get("registered_redirect_uri")
        if client_id != self.client_id:
            return self._authorize_error_page(400, f"invalid client_id {client_id!r}")
        if not redirect_uri or not self._redirect_allowed(redirect_uri):
            return self._authorize_error_page(400, f"invalid redirect_uri {redirect_uri!r}")
        state = req.q("state")

        def fail(error: str, description: str) -> Response:
            params = [("error", error), ("error_description", description)]
            if state is not None:
                params.append(("state", state))
            return redirect(add_query(redirect_uri, params))

        if req.q("response_type") != "code":
            return fail("unsupported_response_type", "response_type must be code")
        scopes = self.parse_scopes(req.q("scope")) or list(self.default_scopes)
        if not scopes:
            return fail("invalid_scope", "scope is required")
        unknown = [s for s in scopes if self.scopes_supported and s not in self.scopes_supported]
        if unknown:
            return fail("invalid_scope", f"unknown scope(s): {' '.join(unknown)}")
        challenge = req.q("code_challenge")
        method = req.q("code_challenge_method")
        if self.supports_pkce and challenge is not None:
            method = method or "plain"
            if method not in ("S256", "plain"):
                return fail("invalid_request", "code_challenge_method must be S256 or plain")
            if not re.fullmatch(r"[A-Za-z0-9._~-]{43,128}", challenge):
                return fail("invalid_request", "malformed code_challenge")
        elif not self.supports_pkce:
            challenge = method = None   # a vendor without PKCE ignores the parameters
        request_id = secrets.token_urlsafe(16)
        with self.lock:
            now = self.now()
            if len(self.pending) > 10000:   # forget abandoned consent pages
                for k in [k for k, p in self.pending.items() if p.expires_at < now]:
                    del self.pending[k]
            self.pending[request_id] = PendingAuthorization(
                client_id, redirect_uri, "redirect_uri" in req.query, state, scopes, challenge, method,
                self.offline_requested(req), now + float(self.opt("code_ttl_s")))
        return html_response(200, self.consent_page(request_id, scopes))

    def offline_requested(self, req: Request) -> bool:
        """Whether the code exchange will also issue a refresh token (Google: access_type=offline)."""
        return True

    def consent_page(self, request_id: str, scopes: list[str]) -> str:
        """A real HTML form a browser test can click through: the user to log in as, one checkbox per
        requested scope (untick to grant less), and Allow / Deny submit buttons."""
        esc = html.escape
        boxes = "\n".join(
            f'      <label><input type="checkbox" name="granted_scope" value="{esc(s)}" checked> {esc(s)}</label><br>'
            for s in scopes)
        return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Authorize access – {esc(self.display_name)} (emulator)</title></head>
<body>
  <h1>{esc(self.display_name)}</h1>
  <p>The application <b id="client">{esc(self.client_id)}</b> asks for access to your account.</p>
  <form id="consent" method="post" action="{esc(self.authorize_path)}/decision">
    <input type="hidden" name="request_id" value="{esc(request_id)}">
    <p><label>Log in as <input type="text" name="user" id="user" value="{esc(str(self.default_user_id))}"></label></p>
    <fieldset><legend>Permissions</legend>
{boxes}
    </fieldset>
    <button type="submit" name="decision" value="allow" id="allow">Allow</button>
    <button type="submit" name="decision" value="deny" id="deny">Deny</button>
  </form>
</body></html>
"""

    def _authorize_decision(self, req: Request) -> Response:
        form = req.form_multi()
        request_id = (form.get("request_id") or [""])[0]
        with self.lock:
            pending = self.pending.pop(request_id, None)
        if pending is None or pending.expires_at < self.now():
            return self._authorize_error_page(400, "this authorization request expired or was already answered")
        params: list[tuple[str, str]] = []
        if (form.get("decision") or [""])[0] != "allow":
            params.append(("error", "access_denied"))
        else:
            granted = [s for s in form.get("granted_scope", []) if s in pending.scopes]
            try:
                user = self._login((form.get("user") or [""])[0].strip())
            except ApiError:
                return self._authorize_error_page(400, "unknown user")
            code = self.new_token("code")
            with self.lock:
                self.codes[code] = Code(code, pending.client_id, pending.redirect_uri, pending.redirect_uri_sent,
                                        user.id, granted, pending.code_challenge, pending.code_challenge_method,
                                        self.now() + float(self.opt("code_ttl_s")), pending.offline)
            params.append(("code", code))
            if self.redirect_includes_scope:
                params.append(("scope", self.scope_separator.join(granted)))
        if pending.state is not None:
            params.append(("state", pending.state))
        return redirect(add_query(pending.redirect_uri, params))

    def _login(self, user_id: str) -> User:
        key = self.user_key(user_id or self.default_user_id)
        with self.lock:
            user = self.users.get(key)
            if user is None:
                if not self.opt("auto_create_users"):
                    raise ApiError(self._authorize_error_page(400, "unknown user"))
                user = self.create_user(key)
            return user

    def consent(self, authorize_url: str, user: Any = None, allow: bool = True,
                granted_scope: str | Iterable[str] | None = None, timeout: float = 10) -> str:
        """Completes the consent page like a browser: GETs `authorize_url`, parses the form, sets the
        user and the scope checkboxes, clicks Allow or Deny, and returns the redirect Location (which
        carries code/state or error). An authorize request the emulator refuses returns its error
        redirect directly; an error page raises."""
        status, headers, body = http_request("GET", authorize_url, timeout=timeout)
        if status in (301, 302, 303):
            return headers["location"]
        if status != 200:
            raise AssertionError(f"authorize page answered {status}: {body[:300]!r}")
        page = _FormParser()
        page.feed(body.decode())
        if page.action is None:
            raise AssertionError("the authorize page has no form")
        if isinstance(granted_scope, str):
            granted_scope = self.parse_scopes(granted_scope)
        wanted = None if granted_scope is None else set(granted_scope)
        fields: list[tuple[str, str]] = []
        for f in page.fields:
            if not f["name"]:
                continue
            if f["type"] == "checkbox":
                on = f["checked"] if wanted is None else f["value"] in wanted
                if on:
                    fields.append((f["name"], f["value"]))
            elif f["type"] in ("text", "hidden"):
                value = str(user) if (f["name"] == "user" and user is not None) else f["value"]
                fields.append((f["name"], value))
        label = "allow" if allow else "deny"
        button = next((b for b in page.buttons if label in (b["value"].lower(), b["text"].strip().lower())), None)
        if button is None:
            raise AssertionError(f"the consent form has no {label} button")
        if button["name"]:
            fields.append((button["name"], button["value"]))
        status, headers, body = http_request(
            page.method.upper(), urljoin(authorize_url, page.action), urlencode(fields).encode(),
            {"Content-Type": "application/x-www-form-urlencoded"}, timeout=timeout)
        if status not in (301, 302, 303):
            raise AssertionError(f"consent decision answered {status}: {body[:300]!r}")
        return headers["location"]

    # ------------------------------------------------------------------------------------------- token

    def authenticate_client(self, req: Request, form: dict) -> Response | None:
        """Checks client credentials by the vendor's methods; returns an error response or None."""
        basic = req.basic() if "basic" in self.client_auth_methods else None
        if basic is not None:
            client_id, secret = basic
        elif "body" in self.client_auth_methods and form.get("client_id") is not None:
            client_id, secret = form.get("client_id"), form.get("client_secret")
        else:
            return self.token_error("invalid_client", 401, "client authentication required", "client_id")
        if client_id != self.client_id:
            return self.token_error("invalid_client", 401, "unknown client", "client_id")
        if not secret or not secrets.compare_digest(secret, self.client_secret):
            return self.token_error("invalid_client", 401, "bad client secret", "client_secret")
        if form.get("client_id") not in (None, client_id):
            return self.token_error("invalid_request", 400, "client_id does not match the credentials", "client_id")
        return None

    def _token(self, req: Request) -> Response:
        form = req.form()
        error = self.authenticate_client(req, form)
        if error is not None:
            return error
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            resp = self._exchange_code(form)
        elif grant_type == "refresh_token" and self.issues_refresh_tokens:
            resp = self._refresh(form)
        else:
            resp = self.token_error("unsupported_grant_type", 400, f"grant_type {grant_type!r} is not supported")
        if resp.status == 200:
            resp.delay_s = float(self.opt("hold_token_response_s"))
        return resp

    def _issue(self, grant: Grant, parent_refresh: str | None, with_refresh: bool) -> tuple[AccessToken, RefreshToken | None]:
        """Issues an access token (and a refresh token) for `grant`. Caller holds the lock."""
        at = AccessToken(self.new_token("access"), grant, self.now() + float(self.opt("access_ttl_s")), parent_refresh)
        self.access_tokens[at.token] = at
        grant.latest_access = at
        rt = None
        if with_refresh:
            rt = RefreshToken(self.new_token("refresh"), grant, parent=parent_refresh)
            self.refresh_tokens[rt.token] = rt
        self.users[grant.user].tokens_issued += 1
        return at, rt

    def _exchange_code(self, form: dict) -> Response:
        code_value = form.get("code") or ""
        with self.lock:
            code = self.codes.get(code_value)
            if code is None or code.client_id != self.client_id:
                return self.token_error("invalid_grant", 400, "unknown authorization code", "code")
            if code.used:
                # RFC 6749 §4.1.2: a code used twice revokes what it issued
                if code.grant is not None and not code.grant.revoked:
                    self._revoke_grant(code.grant, "code_reuse")
                return self.token_error("invalid_grant", 400, "authorization code already used", "code")
            if code.expires_at < self.now():
                return self.token_error("invalid_grant", 400, "authorization code expired", "code")
            redirect_uri = form.get("redirect_uri")
            if redirect_uri is None and (self.token_requires_redirect_uri or
                                         (code.redirect_uri_sent and self.checks_redirect_uri_at_token())):
                return self.token_error("invalid_request", 400, "Missing required parameter: redirect_uri",
                                        "redirect_uri")
            if redirect_uri is not None and self.checks_redirect_uri_at_token() and redirect_uri != code.redirect_uri:
                return self.token_error("invalid_grant", 400, "redirect_uri does not match", "redirect_uri")
            if code.code_challenge is not None:
                verifier = form.get("code_verifier") or ""
                if code.code_challenge_method == "S256":
                    computed = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
                else:
                    computed = verifier
                if not verifier or not secrets.compare_digest(computed, code.code_challenge):
                    return self.token_error("invalid_grant", 400, "code_verifier does not match", "code_verifier")
            code.used = True
            self._next_grant += 1
            grant = Grant(self._next_grant, code.user, code.client_id, list(code.scopes))
            self.user_grants[code.user].append(grant)
            code.grant = grant
            user = self.users[code.user]
            user.locked_out = False     # a fresh consent ends a lockout
            at, rt = self._issue(grant, None, self.issues_refresh_tokens and code.offline)
            return json_response(200, self.token_body(grant, at, rt, exchange=True), [("Cache-Control", "no-store")])

    def checks_redirect_uri_at_token(self) -> bool:
        """Whether the code exchange compares redirect_uri (RFC 6749 §4.1.3); Strava does not."""
        return True

    def _refresh(self, form: dict) -> Response:
        token = form.get("refresh_token") or ""
        if self.opt("refresh_fail_rate") and self._fault_rng.random() < float(self.opt("refresh_fail_rate")):
            # a transient fault before anything changes: the client may retry with the same token
            mode = self._fault_rng.choice(list(self.opt("refresh_fail_modes")))
            if mode == "drop":
                return Response(0, drop=True)
            return self.server_error(None, int(mode))
        with self.lock:
            rt = self.refresh_tokens.get(token)
            if rt is None or rt.grant.client_id != self.client_id:
                return self.token_error("invalid_grant", 400, "unknown refresh token", "refresh_token")
            user = self.users[rt.grant.user]
            if user.locked_out or rt.grant.revoked:
                return self.token_error("invalid_grant", 400, "refresh token revoked", "refresh_token")
            strict = not self.opt("previous_refresh_valid_until_used")
            if rt.state == "dead":
                user.refresh_reuse += 1
                if strict and self.opt("lockout_on_reuse"):
                    # reuse detection: the whole family may be stolen, so every grant of the user dies
                    user.locked_out = True
                    for g in self.user_grants[user.id]:
                        if not g.revoked:
                            self._revoke_grant(g, "refresh_reuse")
                return self.token_error("invalid_grant", 400, "refresh token already used", "refresh_token")
            self._successor_used(rt.parent)
            user.refreshes += 1
            self.refreshes_served += 1
            kept = self.keep_current_tokens(rt)
            if kept is not None:
                return kept
            if not self.opt("rotate_refresh_tokens"):
                at, _ = self._issue(rt.grant, None, with_refresh=False)
                return json_response(200, self.token_body(rt.grant, at, None, exchange=False),
                                     [("Cache-Control", "no-store")])
            if rt.state == "grace":
                # the client lost our last answer and retries with the superseded token: the successor
                # it never saw is withdrawn and a new pair replaces it
                user.refresh_retries += 1
                old_child = self.refresh_tokens.get(rt.child)
                if old_child is not None:
                    old_child.state = "dead"
            at, new_rt = self._issue(rt.grant, rt.token, with_refresh=True)
            rt.child = new_rt.token
            rt.state = "dead" if strict else "grace"
            return json_response(200, self.token_body(rt.grant, at, new_rt, exchange=False),
                                 [("Cache-Control", "no-store")])

    def keep_current_tokens(self, rt: RefreshToken) -> Response | None:
        """Vendor hook: answer a refresh with the current tokens instead of new ones (Strava does while
        the access token is valid for long enough). Caller holds the lock."""
        return None

    def _successor_used(self, parent: str | None) -> None:
        """A token issued by a rotation was used: the refresh token it replaced dies. Caller holds the lock."""
        if parent is not None:
            prev = self.refresh_tokens.get(parent)
            if prev is not None and prev.state == "grace":
                prev.state = "dead"

    def _revoke_grant(self, grant: Grant, via: str) -> None:
        """Caller holds the lock."""
        grant.revoked = True
        user = self.users[grant.user]
        user.revocations += 1
        self.revocation_count += 1
        self.revocations.append({"user": grant.user, "grant": grant.id, "via": via, "at": iso_z(self.now())})

    def revoke_token(self, token: str, via: str) -> Grant | None:
        """Revokes the grant an access or refresh token belongs to; None for an unknown token."""
        with self.lock:
            rec = self.access_tokens.get(token) or self.refresh_tokens.get(token)
            if rec is None:
                return None
            if not rec.grant.revoked:
                self._revoke_grant(rec.grant, via)
            return rec.grant

    # ------------------------------------------------------------------------------- bearer auth (data)

    def authorize_bearer(self, req: Request, scopes_any: Iterable[str] | None = None,
                         token: str | None = None) -> tuple[User, Grant]:
        """Validates the request's access token (or `token`) and returns its user and grant; raises the
        vendor's 401, or its insufficient-scope answer when the grant has none of `scopes_any`."""
        token = token or req.bearer()
        with self.lock:
            at = self.access_tokens.get(token or "")
            if at is None:
                raise ApiError(self.unauthorized(req, "unknown access token"))
            user = self.users[at.grant.user]
            if at.grant.revoked or user.locked_out:
                raise ApiError(self.unauthorized(req, "access token revoked"))
            if at.expires_at <= self.now():
                raise ApiError(self.unauthorized(req, "access token expired"))
            if not at.used:
                at.used = True
                self._successor_used(at.parent_refresh)
            grant = at.grant
        if scopes_any is not None:
            needed = list(scopes_any)
            if not any(s in grant.scopes for s in needed):
                raise ApiError(self.insufficient_scope(req, needed))
        return user, grant

    # ---------------------------------------------------------------------------------------- webhooks

    def deliver(self, url: str, body: bytes, headers: dict, label: str,
                success: Callable[[int], bool] = lambda s: s == 200, attempts: int | None = None,
                timeout: float | None = None) -> dict:
        """POSTs one event with the vendor's retry rule: up to `attempts` tries while the answer is not a
        success or takes longer than `timeout`. Records the outcome; returns
        {status, latency_ms, attempts, delivered, body}."""
        attempts = int(attempts if attempts is not None else self.opt("webhook_attempts"))
        timeout = float(timeout if timeout is not None else self.opt("webhook_timeout_s"))
        tries = []
        status = None
        latency_ms = None
        for i in range(attempts):
            if i:
                time.sleep(float(self.opt("webhook_retry_delay_s")))
            t0 = time.monotonic()
            try:
                status, _, _ = http_request("POST", url, body, {"Content-Type": "application/json", **headers},
                                            timeout=timeout, verify_tls=bool(self.opt("webhook_verify_tls")))
                error = None
            except OSError as e:   # refused, reset, or slower than the vendor waits
                status, error = None, f"{type(e).__name__}: {e}"
            latency_ms = round((time.monotonic() - t0) * 1000, 1)
            tries.append({"status": status, "latency_ms": latency_ms, "error": error})
            if status is not None and success(status):
                break
        delivered = status is not None and success(status)
        record = {"at": iso_z(self.now()), "url": url, "event": label, "delivered": delivered,
                  "attempts": tries, "body": body.decode("utf-8", "replace")}
        with self.lock:
            self.webhook_log.append(record)
            self.webhook_totals["sent"] += 1
            self.webhook_totals["attempts"] += len(tries)
            self.webhook_totals["delivered" if delivered else "failed"] += 1
        return {"status": status, "latency_ms": latency_ms, "attempts": len(tries), "delivered": delivered,
                "url": url, "body": record["body"]}

    def silenced(self) -> dict | None:
        """The answer for an event not sent because the vendor is silent (outage / lapsed subscription)."""
        if self.opt("silent"):
            with self.lock:
                self.webhook_totals["silenced"] += 1
            return {"status": None, "latency_ms": None, "attempts": 0, "delivered": False, "silenced": True}
        return None

    def send_webhook(self, duplicate: bool = False, **event) -> dict:
        """Sends one event now, the vendor's way (see the vendor's `webhook_event` for the fields);
        `duplicate` sends the same body twice. Returns the first delivery's
        {status, latency_ms, attempts, delivered, url, body} with every delivery under "deliveries"."""
        result = self.notify(duplicate=duplicate, **event)
        if result is None:
            raise ApiError(json_response(409, {"error": "no webhook target: no subscription matches and no webhook_url"}))
        return result

    def notify(self, duplicate: bool = False, **event) -> dict | None:
        """Like send_webhook, but None when no subscription matches (data created by a test is not
        necessarily announced)."""
        quiet = self.silenced()
        if quiet is not None:
            return quiet
        sends = self.webhook_event(**event)
        if not sends:
            return None
        deliveries = [send() for send in sends]
        if duplicate:
            deliveries += [send() for send in sends]
        first = dict(deliveries[0])
        first["deliveries"] = deliveries
        return first

    def notify_async(self, **event) -> None:
        """notify() on a background thread: for events an API call causes (a deauthorization), so the
        API answer does not wait for the receiver."""
        threading.Thread(target=self.notify, kwargs=event, daemon=True).start()

    def webhook_event(self, **event) -> list[Callable[[], dict]]:
        """Vendor hook: one zero-argument sender per matching target; each call delivers the event's
        bytes (freshly signed) and returns deliver()'s result."""
        raise NotImplementedError

    def preprovision_webhook(self, url: str) -> None:
        """Vendor hook: a subscription to `url` that exists from the start (as if registered earlier
        in the vendor's portal or API). Caller holds the lock."""

    # ---------------------------------------------------------------------------------------- control

    def state(self, brief: bool = False, user: Any = None) -> dict:
        with self.lock:
            active = [u for u in self.users.values()
                      if u.tokens_issued or u.refresh_reuse or u.locked_out or u.revocations or u.extra.get("registered")]
            out = {
                "vendor": self.vendor,
                "base_url": self.base_url if self._server else None,
                "client_id": self.client_id,
                "clock_offset_s": self._clock_offset,
                "config": dict(self.config),
                "user_count": len(self.users),
                "tokens_issued": sum(u.tokens_issued for u in self.users.values()),
                "refreshes_served": self.refreshes_served,
                "refresh_reuse": {str(u.id): u.refresh_reuse for u in self.users.values() if u.refresh_reuse},
                "refresh_retries": {str(u.id): u.refresh_retries for u in self.users.values() if u.refresh_retries},
                "locked_out": [u.id for u in self.users.values() if u.locked_out],
                "revocation_count": self.revocation_count,
                "revocations": list(self.revocations),
                "subscriptions": self.subscriptions_state(),
                "webhooks": {**{k: self.webhook_totals.get(k, 0)
                                for k in ("sent", "delivered", "failed", "attempts", "silenced")},
                             "recent": list(self.webhook_log)[-50:]},
                "requests": dict(self.request_counts),
            }
            if user is not None:
                out["user"] = self.get_user(user).summary()
            if not brief:
                out["users"] = {str(u.id): u.summary() for u in active}
            return out

    def subscriptions_state(self) -> list:
        """Vendor hook: the webhook subscriptions as the state shows them."""
        return []

    def _ctl_state(self, req: Request) -> Response:
        return json_response(200, self.state(brief=req.q("brief") in ("1", "true"), user=req.q("user")))

    def _ctl_config(self, req: Request) -> Response:
        try:
            return json_response(200, self.configure(**req.json()))
        except ValueError as e:
            return json_response(400, {"error": str(e)})

    def _ctl_users(self, req: Request) -> Response:
        body = req.json()
        if "count" in body:
            return json_response(201, {"ids": self.create_users(body["count"])})
        user = self.create_user(body.get("id"), body.get("name"), body.get("utc_offset_s", 0),
                                **body.get("extra", {}))
        return json_response(201, user.summary())

    def _ctl_revoke_user(self, req: Request) -> Response:
        return json_response(200, {"revoked_grants": self.revoke_user(req.params["user"])})

    def _ctl_clock(self, req: Request) -> Response:
        return json_response(200, {"clock_offset_s": self.advance_clock(float(req.json().get("advance_s", 0))),
                                   "now": iso_z(self.now())})

    def _ctl_send_webhook(self, req: Request) -> Response:
        try:
            return json_response(200, self.send_webhook(**req.json()))
        except TypeError as e:     # a field this vendor's events do not have
            return json_response(400, {"error": str(e)})
