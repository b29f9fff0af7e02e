"""Polar AccessLink v3 emulator.

Follows www.polar.com/accesslink-api and Polar's accesslink-example-python: authorize at
flow.polar.com/oauth2/authorization, token at polarremote.com/v2/oauth2/token with HTTP Basic client
authentication only, a long-lived access token, no refresh token, and the user id in `x_user_id`;
the mandatory registration POST /v3/users {"member-id"} (409 when already registered; data is
refused with 403 until it is done); DELETE /v3/users/{user-id} to deregister (revokes the token);
exercises without transactions (GET /v3/exercises, GET /v3/exercises/{id}?samples=true with samples
{"recording-rate", "sample-type", "data": "v,v,null,..."}); continuous heart rate per date; the
app-level webhook (Basic auth): creating it POSTs {"event": "PING"} to the URL, which must answer
200, and returns signature_secret_key once; notifications {event, user_id, entity_id, timestamp,
url} signed with Polar-Webhook-Signature = hex(HMAC-SHA256(signature_secret_key, body)) (vector B4).
Rate limits: RateLimit-Usage/-Limit/-Reset for the 15-minute and 24-hour windows, the limits
growing with the number of registered users (500 + 20 per user, 5000 + 100 per user).

Exercise fields use Polar's hyphenated keys ("start-time", "heart-rate", ...); the newer 24/7
endpoints (continuous heart rate) use underscores, as Polar's do.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import string
from datetime import datetime, timezone
from typing import Any

from .base import (ApiError, Emulator, Request, Response, Route, compact, http_request, iso_z, json_response,
                   seeded_rng)

EVENTS = ("EXERCISE", "SLEEP", "CONTINUOUS_HEART_RATE", "ACTIVITY_SUMMARY", "SLEEP_WISE_ALERTNESS",
          "SLEEP_WISE_CIRCADIAN_BEDTIME", "PHYSICAL_INFORMATION")


def sign(signature_secret_key: str, body: bytes) -> str:
    """The Polar-Webhook-Signature value for `body` (vector B4)."""
    return hmac.new(signature_secret_key.encode(), body, hashlib.sha256).hexdigest()


def iso_duration(seconds: float) -> str:
    """ISO 8601 duration as Polar writes it: PT1H2M3S."""
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return "PT" + (f"{h}H" if h else "") + (f"{m}M" if m else "") + (f"{sec}S" if sec or not (h or m) else "")


def polar_error(status: int, error_type: str, message: str, headers=()) -> Response:
    return json_response(status, {"timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                                  "status": status, "errorType": error_type, "message": message,
                                  "corrId": secrets.token_hex(8)}, headers)


class PolarEmulator(Emulator):
    vendor = "polar"
    display_name = "Polar Flow"
    scope_separator = " "
    scopes_supported = ("accesslink.read_all",)
    default_scopes = ("accesslink.read_all",)
    authorize_path = "/oauth2/authorization"
    token_path = "/v2/oauth2/token"
    client_auth_methods = ("basic",)
    issues_refresh_tokens = False
    user_id_type = int
    default_user_id = 475                 # the user of the webhook payload example (vector B4)

    VENDOR_DEFAULTS = {
        "access_ttl_s": 31_536_000,       # long-lived (a year); there is no refresh
        "rotate_refresh_tokens": False,
        "webhook_timeout_s": 10.0,
        "registered_redirect_uri": None,  # used when an authorize request has no redirect_uri
        "webhook_secret": None,           # the preprovisioned webhook's key; None: random
        "notification_url_base": None,    # base of the payload's `url`; None: this emulator (SSRF tests)
        "rate_limit_15min_base": 500,
        "rate_limit_15min_per_user": 20,
        "rate_limit_24h_base": 5000,
        "rate_limit_24h_per_user": 100,
    }

    def __init__(self, *args, **kwargs):
        self.exercises: dict[str, dict] = {}
        self.continuous_hr: dict[tuple[int, str], list[dict]] = {}
        self.webhook: dict | None = None
        self._member_ids: dict[str, int] = {}
        super().__init__(*args, **kwargs)

    def urls(self) -> dict[str, str]:
        return {**super().urls(), "api": self.url("/v3")}

    def new_user_id(self) -> int:
        self._next_user += 1
        return 10_000 + self._next_user

    def new_token(self, kind: str) -> str:
        return secrets.token_hex(16)

    # ------------------------------------------------------------------------------------------ routes

    def register_routes(self) -> None:
        r = self.route
        r("POST", "/v3/users", self._register, api=True)
        r("GET", "/v3/users/continuous-heart-rate/{date}", self._continuous_hr, api=True)
        r("GET", "/v3/users/{user_id}", self._user_info, api=True)
        r("DELETE", "/v3/users/{user_id}", self._deregister, api=True)
        r("GET", "/v3/exercises", self._list_exercises, api=True)
        r("GET", "/v3/exercises/{exercise_id}", self._get_exercise, api=True)
        r("POST", "/v3/webhooks", self._create_webhook)
        r("GET", "/v3/webhooks", self._get_webhook)
        r("PATCH", "/v3/webhooks/{webhook_id}", self._patch_webhook)
        r("DELETE", "/v3/webhooks/{webhook_id}", self._delete_webhook)
        r("POST", "/_emulator/exercises", self._ctl_create_exercise, control=True)
        r("POST", "/_emulator/continuous-heart-rate", self._ctl_create_chr, control=True)

    # ----------------------------------------------------------------------------------- answer shapes

    def token_body(self, grant, access, refresh, exchange) -> dict:
        return {"access_token": access.token, "token_type": "bearer",
                "expires_in": int(round(access.expires_at - self.now())), "x_user_id": grant.user}

    def unauthorized(self, req, reason) -> Response:
        return polar_error(401, "UNAUTHORIZED", f"Unauthorized: {reason}",
                           [("WWW-Authenticate", 'Bearer realm="accesslink", error="invalid_token"')])

    def insufficient_scope(self, req, needed) -> Response:
        return polar_error(403, "FORBIDDEN", "Insufficient scope")

    def not_found(self, req) -> Response:
        return polar_error(404, "NOT_FOUND", "Resource not found")

    def server_error(self, req, status) -> Response:
        return polar_error(status, "INTERNAL_SERVER_ERROR" if status == 500 else "SERVICE_UNAVAILABLE",
                           "Something went wrong")

    def too_many_requests(self, req, route) -> Response:
        headers = self._rate(count=False)[0] if route is not None and route.api else []
        return polar_error(429, "TOO_MANY_REQUESTS", "Rate limit exceeded", [*headers, *self.retry_after_headers()])

    # ------------------------------------------------------------------------------------- rate limits

    def _limits(self) -> tuple[int, int]:
        users = sum(1 for u in self.users.values() if u.extra.get("registered"))
        return (int(self.opt("rate_limit_15min_base")) + int(self.opt("rate_limit_15min_per_user")) * users,
                int(self.opt("rate_limit_24h_base")) + int(self.opt("rate_limit_24h_per_user")) * users)

    def _rate(self, count: bool) -> tuple[list[tuple[str, str]], bool]:
        """The rate-limit headers after (optionally) counting a request, and whether it is over."""
        with self.lock:
            (u15, r15), (u24, r24) = self.rate.hit("app", (900, 86400), self.now(), count=count)
            l15, l24 = self._limits()
        headers = [("RateLimit-Usage", f"{u15},{u24}"), ("RateLimit-Limit", f"{l15},{l24}"),
                   ("RateLimit-Reset", f"{int(math.ceil(r15))},{int(math.ceil(r24))}")]
        return headers, u15 > l15 or u24 > l24

    def check_rate_limit(self, req: Request, route: Route) -> Response | None:
        req.rate_headers, over = self._rate(count=True)
        if over:
            return polar_error(429, "TOO_MANY_REQUESTS", "Rate limit exceeded",
                               [*req.rate_headers, *self.retry_after_headers()])
        return None

    def rate_limit_headers(self, req, route) -> list[tuple[str, str]]:
        return req.rate_headers

    # -------------------------------------------------------------------------------------- users

    def _registered_user(self, req: Request):
        user, _ = self.authorize_bearer(req, ("accesslink.read_all",))
        if not user.extra.get("registered"):
            raise ApiError(polar_error(403, "FORBIDDEN", "User is not registered to the partner"))
        return user

    def user_json(self, user) -> dict:
        first, _, last = user.name.partition(" ")
        return {"polar-user-id": user.id, "member-id": user.extra.get("member_id"),
                "registration-date": user.extra.get("registration_date"), "first-name": first, "last-name": last,
                "birthdate": "1985-09-06", "gender": "MALE", "weight": 66.0, "height": 170.0, "extra-info": []}

    def _register(self, req: Request) -> Response:
        user, _ = self.authorize_bearer(req, ("accesslink.read_all",))
        member_id = str(req.json().get("member-id") or "")
        if not member_id:
            return polar_error(400, "BAD_REQUEST", "member-id is required")
        with self.lock:
            if user.extra.get("registered") or self._member_ids.get(member_id, user.id) != user.id:
                return polar_error(409, "CONFLICT", "User already registered to partner or duplicated member-id")
            self._member_ids[member_id] = user.id
            user.extra.update(registered=True, member_id=member_id,
                              registration_date=datetime.fromtimestamp(self.now(), tz=timezone.utc)
                              .strftime("%Y-%m-%dT%H:%M:%S.000Z"))
            return json_response(200, self.user_json(user))

    def _user_info(self, req: Request) -> Response:
        user = self._registered_user(req)
        if req.params["user_id"] != str(user.id):
            return polar_error(403, "FORBIDDEN", "Access to another user's data")
        return json_response(200, self.user_json(user))

    def _deregister(self, req: Request) -> Response:
        user, _ = self.authorize_bearer(req)
        if req.params["user_id"] != str(user.id):
            return polar_error(403, "FORBIDDEN", "Access to another user's data")
        with self.lock:
            self._member_ids.pop(user.extra.get("member_id"), None)
            user.extra.update(registered=False, member_id=None)
        # "This will revoke the access token authorized by user."
        self.revoke_user(user.id, via="deregister")
        return Response(204)

    # -------------------------------------------------------------------------------------- exercises

    def create_exercise(self, user: Any, start: float | None = None, seconds: int = 1800, hr_base: int = 130,
                        recording_rate: int = 1, sport: str = "RUNNING", hr_values: list | None = None,
                        null_ranges: list | None = None, rr: bool = False, utc_offset_min: int = 0,
                        notify: bool = False) -> dict:
        """Creates an exercise with samples every `recording_rate` s: heart rate (0), speed km/h (1),
        cadence (2), altitude (3), distance (10), and RR intervals (11, recording-rate 0) with `rr`.
        `hr_values` replaces the generated heart rate (None entries are sensor dropouts);
        `null_ranges` [[from, to), ...] blanks sample indexes of every series. Returns the exercise as
        GET /v3/exercises/{id}?samples=true shows it, plus "webhook" with `notify` (registered users)."""
        owner = self.get_user(user)
        rate = max(1, int(recording_rate))
        n = len(hr_values) if hr_values is not None else max(2, int(seconds) // rate)
        start = int(self.now() - n * rate - 600 if start is None else start)
        with self.lock:
            rng = seeded_rng(self.seed, "polar", "exercise", owner.id, start, len(self.exercises))
            exercise_id = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(8))
            while exercise_id in self.exercises:
                exercise_id += rng.choice(string.ascii_letters)
        hr, speed, cadence, alt, dist = [], [], [], [], []
        d = 0.0
        for i in range(n):
            t = i * rate
            hr.append(int(round(hr_base + 15 * (1 - math.exp(-t / 180)) + 4 * math.sin(t / 60) + rng.gauss(0, 1.5))))
            v = max(0.0, 11.0 + 1.5 * math.sin(t / 120) + rng.gauss(0, 0.3))
            speed.append(round(v, 1))
            cadence.append(int(round(84 + 3 * math.sin(t / 90) + rng.gauss(0, 1))))
            alt.append(round(40 + 6 * math.sin(t / 600), 1))
            d += v / 3.6 * rate
            dist.append(round(d, 1))
        if hr_values is not None:
            hr = list(hr_values)
        series = {"0": hr, "1": speed, "2": cadence, "3": alt, "10": dist}
        for lo, hi in null_ranges or []:
            for values in series.values():
                for i in range(max(0, lo), min(n, hi)):
                    values[i] = None
        samples = [{"recording-rate": rate, "sample-type": k,
                    "data": ",".join("null" if v is None else str(v) for v in vals)} for k, vals in series.items()]
        if rr:
            rrs = [int(round(60000 / h)) for h in hr if h]
            samples.append({"recording-rate": 0, "sample-type": "11", "data": ",".join(map(str, rrs))})
        known_hr = [h for h in hr if h is not None]
        rec = {"id": exercise_id, "user": owner.id, "start": start, "seconds": n * rate,
               "utc_offset_min": int(utc_offset_min), "sport": sport, "samples": samples,
               "upload_time": start + n * rate + 120, "distance": dist[-1] if dist[-1] is not None else 0.0,
               "hr_avg": int(round(sum(known_hr) / len(known_hr))) if known_hr else None,
               "hr_max": max(known_hr) if known_hr else None}
        with self.lock:
            self.exercises[exercise_id] = rec
        out = self.exercise_json(rec, with_samples=True)
        if notify:   # AccessLink notifies about registered users only
            out["webhook"] = self.notify(event="EXERCISE", user_id=owner.id, entity_id=exercise_id) \
                if owner.extra.get("registered") else None
        return out

    def exercise_json(self, rec: dict, with_samples: bool) -> dict:
        local = datetime.fromtimestamp(rec["start"] + rec["utc_offset_min"] * 60, tz=timezone.utc)
        out = {"id": rec["id"], "upload-time": iso_z(rec["upload_time"]),
               "polar-user": f"{self._resource_base()}/v3/users/{rec['user']}", "device": "Polar Vantage V2",
               "device-id": "1111AAAA", "start-time": local.strftime("%Y-%m-%dT%H:%M:%S"),
               "start-time-utc-offset": rec["utc_offset_min"], "duration": iso_duration(rec["seconds"]),
               "calories": int(rec["seconds"] / 60 * 11), "distance": rec["distance"],
               "heart-rate": {"average": rec["hr_avg"], "maximum": rec["hr_max"]},
               "training-load": round(rec["seconds"] / 60 * 1.7, 1), "sport": rec["sport"], "has-route": False,
               "detailed-sport-info": rec["sport"]}
        if with_samples:
            out["samples"] = [dict(s) for s in rec["samples"]]
        return out

    def _resource_base(self) -> str:
        return (self.opt("notification_url_base") or self.base_url).rstrip("/")

    def _list_exercises(self, req: Request) -> Response:
        user = self._registered_user(req)
        horizon = self.now() - 30 * 86400     # "exercises uploaded within the last 30 days"
        with_samples = req.q("samples") == "true"
        with self.lock:
            recs = sorted((r for r in self.exercises.values() if r["user"] == user.id and r["upload_time"] >= horizon),
                          key=lambda r: r["start"])
        return json_response(200, [self.exercise_json(r, with_samples) for r in recs])

    def _get_exercise(self, req: Request) -> Response:
        user = self._registered_user(req)
        with self.lock:
            rec = self.exercises.get(req.params["exercise_id"])
        if rec is None or rec["user"] != user.id:
            return polar_error(404, "NOT_FOUND", "Exercise not found")
        return json_response(200, self.exercise_json(rec, req.q("samples") == "true"))

    # --------------------------------------------------------------------------- continuous heart rate

    def create_continuous_hr(self, user: Any, date: str, interval_s: int = 300, base: int = 62,
                             values: list | None = None, notify: bool = False) -> dict:
        """Heart rate samples through `date` (YYYY-MM-DD, the user's local day) every `interval_s`, or
        exactly `values` from midnight. Returns the day as GET /v3/users/continuous-heart-rate/{date}."""
        owner = self.get_user(user)
        rng = seeded_rng(self.seed, "polar", "chr", owner.id, date)
        count = len(values) if values is not None else 86400 // int(interval_s)
        samples = []
        for i in range(count):
            t = i * int(interval_s)
            hr = values[i] if values is not None else int(round(base + 10 * math.sin(2 * math.pi * t / 86400 - 1.5)
                                                                 + rng.gauss(0, 2)))
            samples.append({"heart_rate": hr, "sample_time": f"{t // 3600:02d}:{t // 60 % 60:02d}:{t % 60:02d}"})
        with self.lock:
            self.continuous_hr[(owner.id, date)] = samples
        out = self._chr_json(owner.id, date, samples)
        if notify:
            out["webhook"] = self.notify(event="CONTINUOUS_HEART_RATE", user_id=owner.id, date=date) \
                if owner.extra.get("registered") else None
        return out

    def _chr_json(self, user_id: int, date: str, samples: list) -> dict:
        return {"polar_user": f"{self._resource_base()}/v3/users/{user_id}", "date": date,
                "heart_rate_samples": samples}

    def _continuous_hr(self, req: Request) -> Response:
        user = self._registered_user(req)
        with self.lock:
            samples = self.continuous_hr.get((user.id, req.params["date"]))
        if samples is None:
            return polar_error(404, "NOT_FOUND", "No continuous heart rate data for the date")
        return json_response(200, self._chr_json(user.id, req.params["date"], samples))

    # ---------------------------------------------------------------------------------------- webhook

    def _client_auth(self, req: Request) -> None:
        basic = req.basic()
        if basic is None or basic[0] != self.client_id or not secrets.compare_digest(basic[1], self.client_secret):
            raise ApiError(polar_error(401, "UNAUTHORIZED", "Client authentication failed",
                                       [("WWW-Authenticate", 'Basic realm="accesslink"')]))

    def _ping(self, url: str, key: str) -> int | None:
        body = compact({"timestamp": iso_z(self.now()), "event": "PING"})
        try:
            status, _, _ = http_request("POST", url, body, {"Content-Type": "application/json",
                                                            "Polar-Webhook-Event": "PING",
                                                            "Polar-Webhook-Signature": sign(key, body)},
                                        timeout=float(self.opt("webhook_timeout_s")),
                                        verify_tls=bool(self.opt("webhook_verify_tls")))
            return status
        except OSError:
            return None

    def _validate_webhook(self, events: Any, url: Any) -> Response | None:
        if not isinstance(events, list) or not events or any(e not in EVENTS for e in events):
            return polar_error(400, "BAD_REQUEST", f"events must be a non-empty list of {', '.join(EVENTS)}")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            return polar_error(400, "BAD_REQUEST", "url must be an http(s) URL")
        return None

    def _create_webhook(self, req: Request) -> Response:
        self._client_auth(req)
        body = req.json()
        error = self._validate_webhook(body.get("events"), body.get("url"))
        if error is not None:
            return error
        with self.lock:
            if self.webhook is not None:
                return polar_error(409, "CONFLICT", "Webhook already exists")
        key = secrets.token_hex(32)
        status = self._ping(body["url"], key)
        if status != 200:
            return polar_error(400, "BAD_REQUEST", f"Webhook ping was answered {status}, expected 200")
        with self.lock:
            self.webhook = {"id": secrets.token_hex(4), "events": list(body["events"]), "url": body["url"],
                            "signature_secret_key": key}
            return json_response(201, {"data": dict(self.webhook)})

    def preprovision_webhook(self, url: str) -> None:
        self.webhook = {"id": "preprovisioned", "events": list(EVENTS), "url": url,
                        "signature_secret_key": self.opt("webhook_secret") or secrets.token_hex(32)}

    @property
    def webhook_secret(self) -> str | None:
        """The current webhook's signature_secret_key (what the create answer returned once)."""
        return self.webhook["signature_secret_key"] if self.webhook else None

    def _public_webhook(self) -> dict:
        return {k: v for k, v in self.webhook.items() if k != "signature_secret_key"}

    def _get_webhook(self, req: Request) -> Response:
        self._client_auth(req)
        with self.lock:
            return json_response(200, {"data": [self._public_webhook()] if self.webhook else []})

    def _patch_webhook(self, req: Request) -> Response:
        self._client_auth(req)
        body = req.json()
        with self.lock:
            if self.webhook is None or self.webhook["id"] != req.params["webhook_id"]:
                return polar_error(404, "NOT_FOUND", "Webhook not found")
            events, url = body.get("events", self.webhook["events"]), body.get("url", self.webhook["url"])
        error = self._validate_webhook(events, url)
        if error is not None:
            return error
        if url != self.webhook["url"]:
            status = self._ping(url, self.webhook["signature_secret_key"])
            if status != 200:
                return polar_error(400, "BAD_REQUEST", f"Webhook ping was answered {status}, expected 200")
        with self.lock:
            self.webhook.update(events=list(events), url=url)
            return json_response(200, {"data": self._public_webhook()})

    def _delete_webhook(self, req: Request) -> Response:
        self._client_auth(req)
        with self.lock:
            if self.webhook is None or self.webhook["id"] != req.params["webhook_id"]:
                return polar_error(404, "NOT_FOUND", "Webhook not found")
            self.webhook = None
        return Response(204)

    def subscriptions_state(self) -> list:
        return [dict(self.webhook)] if self.webhook else []

    def webhook_event(self, event: str = "EXERCISE", user_id: Any = None, entity_id: str | None = None,
                      date: str | None = None, timestamp: str | None = None, url: str | None = None,
                      target: str | None = None) -> list:
        """{event, user_id, entity_id (or date for day data), timestamp, url} to the webhook when it
        listens to `event`, or to `target`. `url` replaces the resource URL in the payload (a URL on
        another host, for SSRF tests)."""
        with self.lock:
            hook = dict(self.webhook) if self.webhook else None
        if target is None and (hook is None or event not in hook["events"]):
            return []
        key = hook["signature_secret_key"] if hook else (self.opt("webhook_secret") or "")
        uid = int(user_id if user_id is not None else self.default_user_id)
        payload: dict = {"event": event, "user_id": uid}
        if date is not None:
            payload["date"] = date
            resource = f"{self._resource_base()}/v3/users/continuous-heart-rate/{date}"
        else:
            payload["entity_id"] = entity_id or ""
            resource = f"{self._resource_base()}/v3/exercises/{entity_id}"
        payload["timestamp"] = timestamp or iso_z(self.now())
        payload["url"] = url or resource
        body = compact(payload)
        dest = target or hook["url"]
        return [lambda: self.deliver(dest, body, {"Polar-Webhook-Event": event,
                                                  "Polar-Webhook-Signature": sign(key, body)}, event)]

    # ----------------------------------------------------------------------------------------- control

    def _ctl_create_exercise(self, req: Request) -> Response:
        b = req.json()
        if "user" not in b:
            return json_response(400, {"error": "user is required"})
        kw = {k: b[k] for k in ("start", "seconds", "hr_base", "recording_rate", "sport", "hr_values",
                                "null_ranges", "rr", "utc_offset_min", "notify") if k in b}
        return json_response(201, self.create_exercise(b["user"], **kw))

    def _ctl_create_chr(self, req: Request) -> Response:
        b = req.json()
        if "user" not in b or "date" not in b:
            return json_response(400, {"error": "user and date are required"})
        kw = {k: b[k] for k in ("interval_s", "base", "values", "notify") if k in b}
        return json_response(201, self.create_continuous_hr(b["user"], b["date"], **kw))
