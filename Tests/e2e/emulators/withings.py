"""Withings Public Health Data API emulator.

Follows developer.withings.com (API reference: OAuth2, Signature, Notify, Measure, Measure v2, Sleep
v2, Response Status; developer guide: "Keep user's data up to date", "Notification content",
"Glossary"). Every service is a POST naming an `action`, its parameters form fields in the body as
the reference documents them (the query string is not read); every answer is HTTP 200 with the
`{"status", "body", "error"}` envelope, errors included:

- authorize at account.withings.com/oauth2_user/authorize2 (comma-separated scopes), codes valid 30 s;
- POST /v2/oauth2 action=requesttoken (client secret in the body): `{"status":0,"body":{userid,
  access_token, refresh_token, expires_in: 10800, scope, csrf_token, token_type}}`; a new refresh token
  at every refresh, the previous one accepted until the new access token is used or 8 hours pass;
  refusals as field reports show them: 503 "Invalid Params: invalid code" / "… invalid refresh_token";
- POST /v2/signature action=getnonce and the signed POST /v2/oauth2 action=revoke (HMAC-SHA256 of the
  values sorted by key, joined with ",", vector B7): tokens die, the user's subscriptions go;
- POST /notify action=subscribe|list|get|revoke with the user's Bearer token: a subscribe first sends
  HEAD to the callback URL, which must answer 2xx; a subscription is removed after 4 failed deliveries;
- POST /measure action=getmeas (value × 10^unit, more/offset paging), /v2/measure
  action=getintradayactivity and /v2/sleep action=get (24 hours per call at most, `"series": []`
  when empty);
- expired or revoked tokens: status 401 "… invalid_token: The access token provided is invalid";
  over 120 requests a minute: status 601 "Too many request";
- notifications: form-encoded POSTs (userid, appli, startdate/enddate or date, action) to the
  subscribed callback URL, unsigned. Withings' example echoes a callback URL's own query parameters
  in the body (`foo=bar`); `echo_callback_params` does the same.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

from .base import ApiError, Emulator, Request, Response, Route, http_request, json_response, seeded_rng

SCOPES = ("user.info", "user.metrics", "user.activity", "user.sleepevents")
# appli -> the scope a subscription needs ("appli=44 needs the user.activity scope, appli=52 needs
# user.sleepevents", bed in/out 50/51 too)
APPLI_SCOPES = {1: "user.metrics", 2: "user.metrics", 4: "user.metrics", 16: "user.activity",
                44: "user.activity", 46: "user.info", 50: "user.sleepevents", 51: "user.sleepevents",
                52: "user.sleepevents", 54: "user.metrics", 58: "user.metrics"}
BP_TYPES = {9, 10, 11, 54}
INTRADAY_FIELDS = ("steps", "elevation", "calories", "distance", "stroke", "pool_lap", "duration", "heart_rate",
                   "spo2_auto", "rmssd", "sdnn1", "hrv_quality", "rr")
SLEEP_FIELDS = ("hr", "rr", "snoring", "sdnn_1", "rmssd", "hrv_quality", "mvt_score")
INVALID_TOKEN = "XRequestID: Not provided invalid_token: The access token provided is invalid"


def sign(client_secret: str, **params: str) -> str:
    """Withings' request signature: the values sorted by parameter name, joined with ",",
    hex HMAC-SHA256 with the client secret (vector B7)."""
    data = ",".join(str(params[k]) for k in sorted(params))
    return hmac.new(client_secret.encode(), data.encode(), hashlib.sha256).hexdigest()


def envelope(status: int, body: Any = None, error: str | None = None) -> Response:
    """Every Withings answer: HTTP 200 and the status inside."""
    out: dict = {"status": status, "body": body if body is not None else {}}
    if error:
        out["error"] = error
    return json_response(200, out)


def post_fields(req: Request) -> dict[str, str]:
    """A Withings service's parameters: the form fields of the POST body, as the API reference lists
    them. Withings documents no query-string parameters for its POST services, so none are read."""
    if not req.body:
        return {}
    return {k: v[0] for k, v in parse_qs(req.body.decode("utf-8", "replace"), keep_blank_values=True).items()}


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class WithingsEmulator(Emulator):
    vendor = "withings"
    display_name = "Withings"
    scope_separator = ","
    scopes_supported = SCOPES
    authorize_path = "/oauth2_user/authorize2"
    token_path = "/v2/oauth2"
    client_auth_methods = ("body",)
    token_requires_redirect_uri = True
    user_id_type = int
    default_user_id = 12345             # the user of the documented notification example (vector A13)

    VENDOR_DEFAULTS = {
        "access_ttl_s": 10800,
        "code_ttl_s": 30,
        "previous_refresh_grace_s": 8 * 3600,
        "rate_limit_per_min": 120,
        "webhook_timeout_s": 2.0,
        "webhook_attempts": 2,          # "2 HTTP attempts per retry cycle" (the later cycles wait hours)
        "remove_after_failures": 4,
        "echo_callback_params": True,
        "require_https_callback": False,  # Withings: https, a domain, port 80/443 (else "restricted mode")
        "callback_check_method": "HEAD",  # "Withings sends a HEAD request to verify your URL is reachable"
        "nonce_ttl_s": 1800,
        "signature_timestamp_tolerance_s": 600,
        "measure_page_size": 100,
        "userid_as_string": True,       # the A12 example sends "12345678"; the API reference types it int
    }

    def __init__(self, *args, **kwargs):
        self.groups: dict[int, dict] = {}
        self._next_group = 4716596696 - 1          # grpids outgrow 32 bits (vector A14)
        self.intraday: dict[int, dict[int, dict]] = {}
        self.sleep: dict[int, list[dict]] = {}
        self.subscriptions: list[dict] = []
        self.nonces: dict[str, dict] = {}
        self._superseded: dict[str, float] = {}
        super().__init__(*args, **kwargs)

    def urls(self) -> dict[str, str]:
        return {"authorize": self.url(self.authorize_path), "token": self.url(self.token_path), "api": self.base_url}

    def new_user_id(self) -> int:
        self._next_user += 1
        return 20_000_000 + self._next_user

    # ------------------------------------------------------------------------------------------ routes

    def register_routes(self) -> None:
        r = self.route
        r("POST", "/v2/signature", self._signature, api=True)
        r("POST", "/notify", self._notify, api=True)
        r("POST", "/measure", self._measure, api=True)
        r("POST", "/v2/measure", self._measure_v2, api=True)
        r("POST", "/v2/sleep", self._sleep, api=True)
        r("POST", "/_emulator/measures", self._ctl_measures, control=True)
        r("DELETE", "/_emulator/measures/{grpid}", self._ctl_delete_measures, control=True)
        r("POST", "/_emulator/intraday", self._ctl_intraday, control=True)
        r("POST", "/_emulator/sleep", self._ctl_sleep, control=True)

    # ----------------------------------------------------------------------------------- answer shapes

    def token_error(self, error, status=400, description=None, field_name=None) -> Response:
        if field_name in ("code", "refresh_token", "client_id", "client_secret", "redirect_uri"):
            missing = description and description.lower().startswith("missing")
            return envelope(503, error=f"Invalid Params: {'missing' if missing else 'invalid'} {field_name}")
        if error == "unsupported_grant_type":
            return envelope(503, error="Invalid Params: invalid grant_type")
        return envelope(503, error=f"Invalid Params: {description or error}")

    def token_body(self, grant, access, refresh, exchange) -> dict:
        body = {"userid": str(grant.user) if self.opt("userid_as_string") else grant.user,
                "access_token": access.token, "refresh_token": refresh.token if refresh else None,
                "expires_in": int(round(access.expires_at - self.now())), "scope": ",".join(grant.scopes),
                "csrf_token": secrets.token_urlsafe(24), "token_type": "Bearer"}
        return {"status": 0, "body": body}

    def unauthorized(self, req, reason) -> Response:
        return envelope(401, error=INVALID_TOKEN)

    def insufficient_scope(self, req, needed) -> Response:
        return envelope(277, error=f"Unauthorized: the token lacks {' or '.join(needed)}")

    def too_many_requests(self, req, route) -> Response:
        return envelope(601, error="Too many request")

    def server_error(self, req, status) -> Response:
        # An outage answers from the load balancer, not from the API: no envelope.
        return Response(status, b"<html><body><h1>503 Service Unavailable</h1></body></html>",
                        [("Content-Type", "text/html")])

    def new_token(self, kind: str) -> str:
        return secrets.token_hex(20)

    def check_rate_limit(self, req: Request, route: Route) -> Response | None:
        with self.lock:
            (usage, _), = self.rate.hit("app", (60,), self.now())
        return self.too_many_requests(req, route) if usage > int(self.opt("rate_limit_per_min")) else None

    # ------------------------------------------------------------------------------------------ oauth2

    def _token(self, req: Request) -> Response:
        form = post_fields(req)
        # The generic token handler reads `Request.form` (query merged under the body); Withings reads
        # the body only, so the query is dropped before it looks.
        req.query = {}
        action = form.get("action")
        if action == "requesttoken":
            if form.get("grant_type") == "refresh_token":
                self._expire_grace(form.get("refresh_token") or "")
            resp = super()._token(req)
            if resp.status == 200 and form.get("grant_type") == "refresh_token":
                with self.lock:
                    rt = self.refresh_tokens.get(form.get("refresh_token") or "")
                    if rt is not None and rt.state == "grace":
                        self._superseded.setdefault(rt.token, self.now())
            return resp
        if action == "revoke":
            return self._revoke(form)
        return envelope(2554, error="Not implemented")

    def _expire_grace(self, token: str) -> None:
        """The replaced refresh token stays valid 8 hours at most (developer.withings.com "Access and
        refresh tokens"); past that it is dead like a used one."""
        with self.lock:
            since = self._superseded.get(token)
            rt = self.refresh_tokens.get(token)
            if since is not None and rt is not None and rt.state == "grace" \
                    and self.now() - since > float(self.opt("previous_refresh_grace_s")):
                rt.state = "dead"

    def _check_signed(self, form: dict, action: str, signed: dict) -> Response | None:
        if form.get("client_id") != self.client_id:
            return envelope(503, error="Invalid Params: invalid client_id")
        expected = sign(self.client_secret, action=action, client_id=self.client_id, **signed)
        if not secrets.compare_digest(form.get("signature") or "", expected):
            return envelope(342, error="Invalid signature")
        return None

    def _signature(self, req: Request) -> Response:
        form = post_fields(req)
        if form.get("action") != "getnonce":
            return envelope(2554, error="Not implemented")
        ts = _int(form.get("timestamp"))
        if ts is None:
            return envelope(503, error="Invalid Params: invalid timestamp")
        refused = self._check_signed(form, "getnonce", {"timestamp": form.get("timestamp")})
        if refused is not None:
            return refused
        # the wall clock, as the caller signs with its own
        if abs(time.time() - ts) > float(self.opt("signature_timestamp_tolerance_s")):
            return envelope(503, error="Invalid Params: timestamp too far from now")
        nonce = secrets.token_hex(16)
        with self.lock:
            self.nonces[nonce] = {"expires_at": self.now() + float(self.opt("nonce_ttl_s")), "used": False}
        return envelope(0, {"nonce": nonce})

    def _take_nonce(self, nonce: str) -> bool:
        with self.lock:
            rec = self.nonces.get(nonce)
            if rec is None or rec["used"] or rec["expires_at"] < self.now():
                return False
            rec["used"] = True
            return True

    def _revoke(self, form: dict) -> Response:
        """OAuth 2.0 - Revoke user access: "your access and refresh tokens for this user will become
        invalid, and the data update notifications for this user will be automatically unsubscribed"."""
        nonce = form.get("nonce") or ""
        refused = self._check_signed(form, "revoke", {"nonce": nonce})
        if refused is not None:
            return refused
        if not self._take_nonce(nonce):
            return envelope(503, error="Invalid Params: invalid nonce")
        userid = _int(form.get("userid"))
        with self.lock:
            grants = [g for g in self.user_grants.get(userid, []) if g.client_id == self.client_id]
            if userid is None or not grants:
                return envelope(247, error="Invalid Params: invalid userid")
            for g in grants:
                if not g.revoked:
                    self._revoke_grant(g, "revoke")
            self.subscriptions = [s for s in self.subscriptions if s["user"] != userid]
        return envelope(0, {})

    def revoke_user(self, user_id, via="user") -> int:
        """The user unlinks the app in their Withings account: appli 46 action=unlink goes to the user's
        subscriptions, then the tokens and the subscriptions are gone."""
        user = self.get_user(user_id)
        self.notify(userid=user.id, appli=46, action="unlink",
                    date=datetime.fromtimestamp(self.now(), tz=timezone.utc).date().isoformat())
        n = super().revoke_user(user_id, via)
        with self.lock:
            self.subscriptions = [s for s in self.subscriptions if s["user"] != user.id]
        return n

    # ------------------------------------------------------------------------------------------ notify

    def _callback_refusal(self, url: str) -> str | None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 255:
            return "Invalid Params: invalid callbackurl"
        if self.opt("require_https_callback"):
            host = parts.hostname
            if parts.scheme != "https" or host == "localhost" or host.replace(".", "").isdigit() \
                    or parts.port not in (None, 443):
                return "Invalid Params: the callback URL must be https on a domain name and port 443"
        try:
            status, _, _ = http_request(str(self.opt("callback_check_method")), url,
                                        timeout=float(self.opt("webhook_timeout_s")),
                                        verify_tls=bool(self.opt("webhook_verify_tls")))
        except OSError as e:
            return f"Invalid Params: callback URL unreachable ({type(e).__name__})"
        if 200 <= status < 300:
            return None
        return f"Invalid Params: callback URL answered {status} to {self.opt('callback_check_method')}"

    def _notify(self, req: Request) -> Response:
        form = post_fields(req)
        action = form.get("action")
        if action not in ("subscribe", "list", "get", "revoke"):
            return envelope(2554, error="Not implemented")
        user, grant = self.authorize_bearer(req)
        appli = _int(form.get("appli"))
        callback = form.get("callbackurl") or ""
        if action == "list":
            with self.lock:
                profiles = [self._profile(s) for s in self.subscriptions
                            if s["user"] == user.id and (appli is None or s["appli"] == appli)]
            return envelope(0, {"profiles": profiles})
        if action == "subscribe":
            if appli not in APPLI_SCOPES:
                return envelope(503, error="Invalid Params: invalid appli")
            if APPLI_SCOPES[appli] not in grant.scopes:
                return self.insufficient_scope(req, [APPLI_SCOPES[appli]])
            refusal = self._callback_refusal(callback)
            if refusal is not None:
                return envelope(293, error=refusal)
            with self.lock:
                if not any(self._same(s, user.id, appli, callback) for s in self.subscriptions):
                    self.subscriptions.append({"user": user.id, "appli": appli, "callbackurl": callback,
                                               "comment": form.get("comment") or "", "failures": 0})
            return envelope(0, {})
        with self.lock:
            mine = [s for s in self.subscriptions if self._same(s, user.id, appli if appli is not None else 1,
                                                                  callback)]
            if not mine:
                return envelope(286, error="Invalid Params: no such subscription")
            if action == "get":
                return envelope(0, self._profile(mine[0]))
            self.subscriptions = [s for s in self.subscriptions if s not in mine]
        return envelope(0, {})

    @staticmethod
    def _same(sub: dict, user: int, appli: int, callback: str) -> bool:
        return sub["user"] == user and sub["appli"] == appli and sub["callbackurl"] == callback

    @staticmethod
    def _profile(sub: dict) -> dict:
        return {"appli": sub["appli"], "callbackurl": sub["callbackurl"], "expires": 2147483647,
                "comment": sub["comment"]}

    def preprovision_webhook(self, url: str) -> None:
        user = self.users[self.default_user_id]
        for appli in (1, 4, 16, 44, 46):
            self.subscriptions.append({"user": user.id, "appli": appli, "callbackurl": url, "comment": "",
                                       "failures": 0})

    def subscriptions_state(self) -> list:
        return [dict(s) for s in self.subscriptions]

    # ---------------------------------------------------------------------------------------- measures

    def _measure(self, req: Request) -> Response:
        form = post_fields(req)
        if form.get("action") != "getmeas":
            return envelope(2554, error="Not implemented")
        user, _ = self.authorize_bearer(req, ("user.metrics",))
        types = None
        if form.get("meastypes"):
            types = {_int(t) for t in form["meastypes"].split(",")}
        elif form.get("meastype"):
            types = {_int(form["meastype"])}
        category = _int(form.get("category"))
        start, end, since = _int(form.get("startdate")), _int(form.get("enddate")), _int(form.get("lastupdate"))
        offset = _int(form.get("offset")) or 0
        with self.lock:
            out = []
            for g in sorted(self.groups.values(), key=lambda g: (-g["date"], -g["grpid"])):
                if g["_user"] != user.id or (category is not None and g["category"] != category):
                    continue
                if since is not None and g["modified"] < since:
                    continue
                if since is None and ((start is not None and g["date"] < start) or (end is not None and g["date"] > end)):
                    continue
                measures = [m for m in g["measures"] if types is None or m["type"] in types]
                if measures:
                    out.append({**{k: v for k, v in g.items() if not k.startswith("_")}, "measures": measures})
        size = int(self.opt("measure_page_size"))
        page = out[offset:offset + size]
        more = offset + size < len(out)
        return envelope(0, {"updatetime": int(self.now()), "timezone": self._tz(user), "measuregrps": page,
                            "more": 1 if more else 0, "offset": offset + len(page) if more else 0})

    @staticmethod
    def _tz(user) -> str:
        hours = user.utc_offset_s // 3600
        return "UTC" if hours == 0 else f"Etc/GMT{'-' if hours > 0 else '+'}{abs(hours)}"

    def create_measure_group(self, user: Any, date: float | None = None, measures=((1, 72500, -3),),
                             model: str | None = "Body+", attrib: int = 0, category: int = 1,
                             notify: bool = False) -> dict:
        """One measure group: `measures` as (type, value, unit) with value × 10^unit the real value.
        Returns the group as getmeas shows it (+ "webhook": appli 4 for blood pressure, pulse and SpO2,
        appli 1 otherwise, the window from the measure's date to its upload)."""
        owner = self.get_user(user)
        now = int(self.now())
        date = int(now - 60 if date is None else date)
        with self.lock:
            self._next_group += 1
            rng = seeded_rng(self.seed, "withings", "device", owner.id, model)
            deviceid = "%040x" % rng.getrandbits(160)
            group = {"grpid": self._next_group, "attrib": attrib, "date": date, "created": now, "modified": now,
                     "category": category, "deviceid": deviceid if model else None,
                     "hash_deviceid": deviceid if model else None,
                     "measures": [{"value": int(v), "type": int(t), "unit": int(u), "algo": 0, "fm": 3}
                                  for t, v, u in measures],
                     "modelid": {"Body+": 5, "BPM Core": 44, "Thermo": 70, "ScanWatch": 93}.get(model),
                     "model": model, "comment": None, "_user": owner.id}
            self.groups[group["grpid"]] = group
        out = {k: v for k, v in group.items() if not k.startswith("_")}
        if notify:
            appli = 4 if any(int(t) in BP_TYPES for t, _, _ in measures) else 1
            out["webhook"] = self.notify(userid=owner.id, appli=appli, startdate=date, enddate=now)
        return out

    def delete_measure_group(self, grpid: int, notify: bool = False) -> dict | None:
        """The user deletes a measure: gone from getmeas; Withings notifies its category and window."""
        with self.lock:
            group = self.groups.pop(int(grpid), None)
        if group is None:
            raise ApiError(json_response(404, {"error": f"no measure group {grpid}"}))
        if not notify:
            return None
        appli = 4 if any(m["type"] in BP_TYPES for m in group["measures"]) else 1
        return self.notify(userid=group["_user"], appli=appli, startdate=group["date"], enddate=int(self.now()))

    # ------------------------------------------------------------------------------- intraday, sleep

    def _window(self, form: dict, required: bool) -> tuple[int, int] | Response:
        start, end = _int(form.get("startdate")), _int(form.get("enddate"))
        if start is None or end is None:
            if required:
                return envelope(503, error="Invalid Params: startdate and enddate are required")
            end = int(self.now())
            start = end - 86400
        if end < start:
            return envelope(503, error="Invalid Params: enddate is before startdate")
        # "If your input startdate and enddate are separated by more than 24h, only the first 24h after
        # startdate will be returned."
        return start, min(end, start + 86400)

    def _fields(self, form: dict, known: tuple[str, ...]) -> set[str]:
        asked = form.get("data_fields")
        return set(known) if not asked else {f for f in asked.split(",") if f in known}

    def _measure_v2(self, req: Request) -> Response:
        form = post_fields(req)
        if form.get("action") != "getintradayactivity":
            return envelope(2554, error="Not implemented")
        user, _ = self.authorize_bearer(req, ("user.activity",))
        window = self._window(form, required=False)
        if isinstance(window, Response):
            return window
        start, end = window
        fields = self._fields(form, INTRADAY_FIELDS)
        with self.lock:
            rows = self.intraday.get(user.id, {})
            series = {str(t): {**{k: v for k, v in e.items() if k in ("deviceid", "model", "model_id")},
                               **{k: v for k, v in e.items() if k in fields}}
                      for t, e in sorted(rows.items()) if start <= t <= end}
        # no data is an empty array, not an empty object
        return envelope(0, {"series": series or []})

    def create_intraday(self, user: Any, start: float | None = None, minutes: int = 30, hr_base: int = 72,
                        steps_per_min: int = 60, model: str = "ScanWatch", values: list[dict] | None = None,
                        notify: bool = False) -> dict:
        """Minute entries from `start` (or exactly `values`, dicts of intraday fields) with heart_rate,
        steps, distance, calories and duration 60. Returns {"series": {epoch: entry}} (+ "webhook":
        appli 16 with the user's local `date`, as Withings announces activity)."""
        owner = self.get_user(user)
        start = int(self.now() - minutes * 60 - 120 if start is None else start)
        start -= start % 60
        rng = seeded_rng(self.seed, "withings", "intraday", owner.id, start)
        deviceid = "%040x" % seeded_rng(self.seed, "withings", "device", owner.id, model).getrandbits(160)
        rows = {}
        count = len(values) if values is not None else int(minutes)
        for i in range(count):
            t = start + 60 * i
            if values is not None:
                entry = dict(values[i])
            else:
                steps = max(0, int(round(steps_per_min * (0.5 + 0.5 * math.sin(i / 5)) + rng.gauss(0, 3))))
                entry = {"heart_rate": int(round(hr_base + 8 * math.sin(i / 7) + rng.gauss(0, 2))), "steps": steps,
                         "distance": round(steps * 0.74, 2), "calories": round(steps * 0.04, 3), "duration": 60}
            rows[t] = {"deviceid": deviceid, "model": model, "model_id": 93 if model == "ScanWatch" else None, **entry}
        with self.lock:
            self.intraday.setdefault(owner.id, {}).update(rows)
        out = {"series": {str(t): e for t, e in rows.items()}}
        if notify:
            local = datetime.fromtimestamp(start + owner.utc_offset_s, tz=timezone.utc).date().isoformat()
            out["webhook"] = self.notify(userid=owner.id, appli=16, date=local)
        return out

    def _sleep(self, req: Request) -> Response:
        form = post_fields(req)
        if form.get("action") != "get":
            return envelope(2554, error="Not implemented")
        user, _ = self.authorize_bearer(req, ("user.activity",))
        window = self._window(form, required=True)
        if isinstance(window, Response):
            return window
        start, end = window
        fields = self._fields(form, SLEEP_FIELDS)
        with self.lock:
            segments = [s for s in self.sleep.get(user.id, []) if start <= s["startdate"] <= end]
            series = [{**{k: v for k, v in s.items() if k not in SLEEP_FIELDS},
                       **{k: v for k, v in s.items() if k in fields}} for s in segments]
        return envelope(0, {"series": series, "model": 16})

    def create_sleep(self, user: Any, start: float | None = None, seconds: int = 4 * 3600, hr_base: int = 56,
                     model: str = "ScanWatch", notify: bool = False) -> dict:
        """A night of 30-minute segments (light, deep, REM, light, …, awake last) with `hr` and `rr` every
        10 minutes inside each. Returns {"series": [...]} (+ "webhook": appli 44 with the night's window)."""
        owner = self.get_user(user)
        start = int(self.now() - seconds - 1800 if start is None else start)
        start -= start % 60
        rng = seeded_rng(self.seed, "withings", "sleep", owner.id, start)
        n = max(1, int(seconds) // 1800)
        states = [1, 2, 3, 1]
        segments = []
        for i in range(n):
            s, e = start + 1800 * i, start + 1800 * (i + 1)
            segment = {"startdate": s, "enddate": e, "state": 0 if i == n - 1 else states[i % 4], "model": model,
                       "model_id": 93 if model == "ScanWatch" else 63,
                       "hr": {str(t): int(round(hr_base + 4 * math.cos(t / 3600) + rng.gauss(0, 1)))
                              for t in range(s, e, 600)},
                       "rr": {str(t): int(round(14 + rng.gauss(0, 1))) for t in range(s, e, 600)}}
            segments.append(segment)
        with self.lock:
            self.sleep.setdefault(owner.id, []).extend(segments)
        out = {"series": segments}
        if notify:
            out["webhook"] = self.notify(userid=owner.id, appli=44, startdate=start, enddate=start + 1800 * n)
        return out

    # ---------------------------------------------------------------------------------------- webhooks

    def webhook_event(self, userid: Any = None, appli: int = 1, startdate: int | None = None,
                      enddate: int | None = None, date: str | None = None, deviceid: str | None = None,
                      action: str | None = None, target: str | None = None) -> list:
        """The form fields Withings posts, to every subscription of (userid, appli) or to `target`."""
        user = int(userid if userid is not None else self.default_user_id)
        fields = [("userid", str(user)), ("appli", str(int(appli)))]
        for name, value in (("startdate", startdate), ("enddate", enddate), ("date", date),
                            ("deviceid", deviceid), ("action", action)):
            if value is not None:
                fields.append((name, str(value)))
        with self.lock:
            subs = [None] if target else [s for s in self.subscriptions if s["user"] == user and s["appli"] == appli]
        return [lambda sub=sub: self._post(sub, target, fields, f"appli {appli}") for sub in subs]

    def _post(self, sub: dict | None, target: str | None, fields: list, label: str) -> dict:
        url = target or sub["callbackurl"]
        echoed = parse_qsl(urlsplit(url).query, keep_blank_values=True) if self.opt("echo_callback_params") else []
        body = urlencode(echoed + fields).encode()
        result = self.deliver(url, body, {"Content-Type": "application/x-www-form-urlencoded"}, label,
                              success=lambda s: 200 <= s < 400)
        if sub is not None:
            with self.lock:
                sub["failures"] = 0 if result["delivered"] else sub["failures"] + 1
                # "After four consecutive failures, the notification subscription is removed."
                if sub["failures"] >= int(self.opt("remove_after_failures")) and sub in self.subscriptions:
                    self.subscriptions.remove(sub)
        return result

    # ----------------------------------------------------------------------------------------- control

    def _ctl_measures(self, req: Request) -> Response:
        b = req.json()
        if "user" not in b:
            return json_response(400, {"error": "user is required"})
        kw = {k: b[k] for k in ("date", "measures", "model", "attrib", "category", "notify") if k in b}
        return json_response(201, self.create_measure_group(b["user"], **kw))

    def _ctl_delete_measures(self, req: Request) -> Response:
        return json_response(200, {"webhook": self.delete_measure_group(int(req.params["grpid"]),
                                                                        notify=req.q("notify") == "1")})

    def _ctl_intraday(self, req: Request) -> Response:
        b = req.json()
        if "user" not in b:
            return json_response(400, {"error": "user is required"})
        kw = {k: b[k] for k in ("start", "minutes", "hr_base", "steps_per_min", "model", "values", "notify") if k in b}
        return json_response(201, self.create_intraday(b["user"], **kw))

    def _ctl_sleep(self, req: Request) -> Response:
        b = req.json()
        if "user" not in b:
            return json_response(400, {"error": "user is required"})
        kw = {k: b[k] for k in ("start", "seconds", "hr_base", "model", "notify") if k in b}
        return json_response(201, self.create_sleep(b["user"], **kw))
