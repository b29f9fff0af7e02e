"""Suunto Cloud API emulator (Suunto API Zone, behind Azure API Management).

Follows the API Zone pages: "How to start" (authorize at cloudapi-oauth.suunto.com/oauth/authorize
with response_type, client_id and redirect_uri; token at /oauth/token with HTTP Basic client
authentication; the subscription key in `Ocp-Apim-Subscription-Key` on every API call, primary or
secondary key), the Authorisation API's token operation (JWT access and refresh tokens, the expiry in
the `exp` attribute, a custom `user` claim holding the username), "Webhook notifications" (URL and
notification secret set in the app settings; WORKOUT_CREATED with the workout object and gear,
ROUTE_CREATED, SUUNTO_247_{ACTIVITY,SLEEP,RECOVERY}_CREATED with the samples inline, the user named by
`username`, `X-HMAC-SHA256-Signature` = hex HMAC-SHA256(notification secret, body) — vector B5 —,
a 2-second answer deadline; the legacy form-encoded workout notification `username=…&workoutid=…`),
and the Workout API (`GET /v3/workouts` with since/until/limit/offset in epoch milliseconds and the
`{error, metadata, payload}` envelope, `GET /v3/workouts/{key}`, the FIT file at
`GET /v3/workouts/{key}/fit` and at the older documented `GET /v2/workout/exportFit/{key}`). 24/7
samples are served at `GET /247samples/{activity|sleep|recovery}?from&to` (ms, at most 28 days), as
the open-source integrations call them; samples are `{timestamp (ISO 8601 with offset), entryData}`.

Where Suunto documents nothing, the choice is written down here: revocation at
`GET /oauth/deauthorize?client_id=` with the user's bearer token (what quantified-self calls); token
errors in RFC 6749 §5.2 shape; no documented rate limits, so none apply unless `rate_limit_per_min` is
set (then Azure API Management's answer: 429 `{"statusCode", "message"}` with Retry-After), and
`quota_exhausted` gives APIM's 403 "Out of call volume quota"; a refused subscription key is APIM's
401 `{"statusCode":401,"message":"Access denied due to invalid subscription key…"}`.

Workout FIT files are real FIT files: generated here by `make_fit` (file_id with manufacturer suunto,
one record a second with heart rate, distance and speed; CRCs as the FIT protocol defines them) or
the device file in data/ (`fit_file="garmin-fenix5-run-hrv.fit"`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import secrets
import struct
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from .base import (ApiError, Emulator, Request, Response, Route, compact, iso_offset, json_response, parse_iso,
                   seeded_rng)

DATA = Path(__file__).resolve().parent / "data"
FIT_EPOCH = 631065600                 # 1989-12-31T00:00:00Z, the FIT time origin
SUUNTO_MANUFACTURER = 23              # FIT profile: manufacturer "suunto"
MAX_247_WINDOW_MS = 28 * 86_400_000   # "Maximum fetch interval duration is 28 days"
SAMPLE_KINDS = ("activity", "sleep", "recovery")
EVENT_OF_KIND = {"activity": "SUUNTO_247_ACTIVITY_CREATED", "sleep": "SUUNTO_247_SLEEP_CREATED",
                 "recovery": "SUUNTO_247_RECOVERY_CREATED"}


def sign(notification_secret: str, body: bytes) -> str:
    """The X-HMAC-SHA256-Signature value for `body` (vector B5)."""
    return hmac.new(notification_secret.encode(), body, hashlib.sha256).hexdigest()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(claims: dict, key: bytes) -> str:
    """An HS256 JWT with `claims` (compact JSON segments, base64url without padding)."""
    head = _b64url(compact({"alg": "HS256", "typ": "JWT"}))
    body = _b64url(compact(claims))
    mac = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64url(mac)}"


def jwt_claims(token: str) -> dict | None:
    """The payload of a JWT (not verified), or None."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        return json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None


# ------------------------------------------------------------------------------------------------ FIT

_CRC_TABLE = (0x0000, 0xCC01, 0xD801, 0x1400, 0xF001, 0x3C00, 0x2800, 0xE401,
              0xA001, 0x6C00, 0x7800, 0xB401, 0x5000, 0x9C01, 0x8801, 0x4400)


def fit_crc(data: bytes, crc: int = 0) -> int:
    """The FIT protocol's CRC-16 (nibble table, as in the FIT SDK)."""
    for byte in data:
        tmp = _CRC_TABLE[crc & 0xF]
        crc = ((crc >> 4) & 0x0FFF) ^ tmp ^ _CRC_TABLE[byte & 0xF]
        tmp = _CRC_TABLE[crc & 0xF]
        crc = ((crc >> 4) & 0x0FFF) ^ tmp ^ _CRC_TABLE[(byte >> 4) & 0xF]
    return crc


def make_fit(start: int, heart_rate: list, speed_mps: list, product: int = 1, serial: int = 123456789) -> bytes:
    """A FIT activity file: file_id, then one record a second from `start` (Unix seconds) with
    heart_rate, cumulative distance (from the speeds) and speed; None is the base type's invalid value."""
    def definition(local: int, global_number: int, fields: list[tuple[int, int, int]]) -> bytes:
        return struct.pack("<BBBHB", 0x40 | local, 0, 0, global_number, len(fields)) + b"".join(
            struct.pack("<BBB", *f) for f in fields)

    body = definition(0, 0, [(0, 1, 0x00), (1, 2, 0x84), (2, 2, 0x84), (3, 4, 0x8C), (4, 4, 0x86)])
    body += struct.pack("<BBHHII", 0x00, 4, SUUNTO_MANUFACTURER, product, serial, start - FIT_EPOCH)
    body += definition(1, 20, [(253, 4, 0x86), (3, 1, 0x02), (5, 4, 0x86), (6, 2, 0x84)])
    distance = 0.0
    for i, (hr, v) in enumerate(zip(heart_rate, speed_mps)):
        if v is not None and i:
            distance += v
        body += struct.pack("<BIBIH", 0x01, start + i - FIT_EPOCH, 0xFF if hr is None else int(hr),
                            int(round(distance * 100)), 0xFFFF if v is None else int(round(v * 1000)))
    header = struct.pack("<BBHI4s", 14, 0x20, 2132, len(body), b".FIT")
    header += struct.pack("<H", fit_crc(header))
    return header + body + struct.pack("<H", fit_crc(header + body))


def iso_ms(t: float, offset_s: int) -> str:
    """Local time with milliseconds and offset, as Suunto writes 24/7 times: 2026-08-27T00:10:00.000+03:00."""
    local = iso_offset(t, offset_s)
    return local[:19] + ".000" + local[19:]


def apim_error(status: int, message: str, headers=()) -> Response:
    """Azure API Management's own error body (gateway refusals, before Suunto's backend sees a call)."""
    return json_response(status, {"statusCode": status, "message": message}, headers)


def suunto_error(status: int, code: str, description: str) -> Response:
    """The Suunto API envelope with an error (Workout API representations)."""
    return json_response(status, {"error": {"code": code, "description": description}, "metadata": {},
                                  "payload": None})


class SuuntoEmulator(Emulator):
    vendor = "suunto"
    display_name = "Suunto"
    scope_separator = " "
    scopes_supported = ("workout",)
    default_scopes = ("workout",)          # "How to start" sends no scope; the grant covers the data API
    authorize_path = "/oauth/authorize"
    token_path = "/oauth/token"
    client_auth_methods = ("basic",)       # "Token endpoint is protected using Basic authentication scheme"
    user_id_type = str
    default_user_id = "suuntouser1"        # the user of the signature vector B5

    VENDOR_DEFAULTS = {
        "access_ttl_s": 86400,
        "refresh_ttl_s": 180 * 86400,
        "rotate_refresh_tokens": True,     # every token call answers "new access and refresh tokens"
        "webhook_timeout_s": 2.0,          # Suunto waits 2 seconds for the answer
        "subscription_keys": ["emulator-primary-key", "emulator-secondary-key"],
        "notification_secret": "emulator-notification-secret",
        "token_user_field": True,          # the token answer also names the user at top level
        "token_expires_in": True,          # the token answer has expires_in besides the JWT's exp
        "token_user_claim": True,          # False: access tokens without the `user` claim
        "fit_pending_requests": 0,         # answer this many FIT requests with JSON (still processing)
        "rate_limit_per_min": None,        # undocumented: no limit unless set
        "quota_exhausted": False,
    }

    def __init__(self, *args, **kwargs):
        self.workouts: dict[str, dict] = {}
        self.samples: dict[tuple[str, str], list[dict]] = {}
        self.notification_urls: list[str] = []
        self._issuing = None
        self._jwt_key = secrets.token_bytes(32)
        self._fit_pending: dict[str, int] = {}
        super().__init__(*args, **kwargs)

    def urls(self) -> dict[str, str]:
        return {**super().urls(), "revoke": self.url("/oauth/deauthorize"), "api": self.base_url}

    # ------------------------------------------------------------------------------------------ tokens

    def _issue(self, grant, parent_refresh, with_refresh):
        self._issuing = grant          # the lock is held: new_token() below sees this grant
        try:
            return super()._issue(grant, parent_refresh, with_refresh)
        finally:
            self._issuing = None

    def new_token(self, kind: str) -> str:
        grant = self._issuing
        if kind not in ("access", "refresh") or grant is None:
            return secrets.token_hex(20)
        now = int(self.now())
        ttl = self.opt("access_ttl_s") if kind == "access" else self.opt("refresh_ttl_s")
        claims: dict = {"exp": now + int(ttl), "iat": now, "jti": secrets.token_hex(8),
                        "client_id": self.client_id, "scope": list(grant.scopes), "authorities": ["ROLE_USER"]}
        if kind == "access" and self.opt("token_user_claim"):
            claims = {"user": str(grant.user), **claims}
        if kind == "refresh":
            claims["ati"] = secrets.token_hex(8)
        return jwt(claims, self._jwt_key)

    def token_body(self, grant, access, refresh, exchange) -> dict:
        body: dict = {"access_token": access.token, "token_type": "bearer"}
        if refresh is not None:
            body["refresh_token"] = refresh.token
        if self.opt("token_expires_in"):
            body["expires_in"] = int(round(access.expires_at - self.now())) - 1
        body["scope"] = " ".join(grant.scopes)
        if self.opt("token_user_field"):
            body["user"] = str(grant.user)
        body["jti"] = (jwt_claims(access.token) or {}).get("jti", "")
        return body

    # ------------------------------------------------------------------------------------------ routes

    def register_routes(self) -> None:
        r = self.route
        r("GET", "/oauth/deauthorize", self._deauthorize)
        r("GET", "/v3/workouts", self._list_workouts, api=True)
        r("GET", "/v3/workouts/", self._list_workouts, api=True)
        r("GET", "/v3/workouts/{key}", self._get_workout, api=True)
        r("GET", "/v3/workouts/{key}/fit", self._get_fit, api=True)
        r("GET", "/v2/workout/exportFit/{key}", self._get_fit, api=True)
        r("GET", "/247samples/{kind}", self._get_samples, api=True)
        r("POST", "/_emulator/workouts", self._ctl_workout, control=True)
        r("POST", "/_emulator/247samples", self._ctl_samples, control=True)

    def not_found(self, req) -> Response:
        return apim_error(404, "Resource not found")

    def server_error(self, req, status) -> Response:
        return apim_error(status, "Internal server error" if status == 500 else "Service unavailable")

    def too_many_requests(self, req, route) -> Response:
        ra = self.opt("retry_after_s")
        seconds = int(ra) if ra is not None else 60
        return apim_error(429, f"Rate limit is exceeded. Try again in {seconds} seconds.",
                          [("Retry-After", str(seconds))])

    def check_rate_limit(self, req: Request, route: Route) -> Response | None:
        key = req.headers.get("Ocp-Apim-Subscription-Key") or ""
        if key not in self.opt("subscription_keys"):
            if not key:
                return apim_error(401, "Access denied due to missing subscription key. Make sure to include "
                                       "subscription key when making requests to an API.")
            return apim_error(401, "Access denied due to invalid subscription key. Make sure to provide a valid key "
                                   "for an active subscription.")
        if self.opt("quota_exhausted"):
            return apim_error(403, "Out of call volume quota. Quota will be replenished in 00:10:00.",
                              [("Retry-After", "600")])
        limit = self.opt("rate_limit_per_min")
        if limit is not None:
            with self.lock:
                [(used, reset)] = self.rate.hit(key, (60,), self.now())
            if used > int(limit):
                seconds = max(1, int(math.ceil(reset)))
                return apim_error(429, f"Rate limit is exceeded. Try again in {seconds} seconds.",
                                  [("Retry-After", str(seconds))])
        return None

    # -------------------------------------------------------------------------------------- revocation

    def _deauthorize(self, req: Request) -> Response:
        if req.q("client_id") != self.client_id:
            return self.token_error("invalid_client", 400, "unknown client_id")
        grant = self.revoke_token(req.bearer() or "", via="deauthorize")
        if grant is None:
            return self.unauthorized(req, "unknown access token")
        return Response(200)

    # ---------------------------------------------------------------------------------------- workouts

    def create_workout(self, user: Any, start: float | None = None, seconds: int = 60, hr_base: int = 120,
                       hr_values: list | None = None, speed_mps: float = 3.0, activity_id: int = 3,
                       fit_file: str | None = None, utc_offset_min: int = 120, notify: bool = False) -> dict:
        """A workout with a FIT file: generated (one record a second, `hr_values` or a heart rate rising
        from `hr_base`; None entries are dropouts) or a file from data/ (`fit_file`). Returns the workout
        as the Workout API shows it (plus "fit_bytes": the file's length), and "webhook" with `notify`."""
        owner = self.get_user(user)
        with self.lock:
            rng = seeded_rng(self.seed, "suunto", "workout", owner.id, len(self.workouts))
            key = "%024x" % rng.getrandbits(96)
        if fit_file:
            fit = (DATA / fit_file).read_bytes()
            n = seconds
            start = int(start if start is not None else self.now() - n - 300)
            hr = []
        else:
            n = len(hr_values) if hr_values is not None else max(2, int(seconds))
            start = int(start if start is not None else self.now() - n - 300)
            hr = list(hr_values) if hr_values is not None else [
                int(round(hr_base + 20 * (1 - math.exp(-i / 60)) + rng.gauss(0, 1))) for i in range(n)]
            fit = make_fit(start, hr, [speed_mps] * n)
        known = [h for h in hr if h is not None]
        rec = {"workoutKey": key, "user": owner.id, "activityId": activity_id, "startTime": start * 1000,
               "stopTime": (start + n) * 1000, "totalTime": n, "totalDistance": round(speed_mps * (n - 1), 2),
               "avgSpeed": speed_mps, "maxSpeed": speed_mps, "energyConsumption": int(n / 60 * 12),
               "stepCount": int(n * 2.8), "totalAscent": 0.0, "totalDescent": 0.0,
               "hrdata": {"workoutAvgHR": int(round(sum(known) / len(known))) if known else None,
                          "workoutMaxHR": max(known) if known else None},
               "timeOffsetInMinutes": int(utc_offset_min), "created": int(self.now() * 1000),
               "gear": {"manufacturer": "Suunto", "name": "Suunto Vertical", "productType": "SPORT_WATCH",
                        "serialNumber": "123456789", "swVersion": "2.38.22"},
               "fit": fit, "hr": hr}
        with self.lock:
            self.workouts[key] = rec
        out = {**self.workout_json(rec), "fit_bytes": len(fit)}
        if notify:
            out["webhook"] = self.notify(type="WORKOUT_CREATED", username=owner.id, workout_key=key)
        return out

    def workout_json(self, rec: dict) -> dict:
        return {k: v for k, v in rec.items() if k not in ("user", "fit", "hr", "gear")} | {"gear": dict(rec["gear"])}

    def _owned(self, req: Request) -> dict:
        user, _ = self.authorize_bearer(req)
        with self.lock:
            rec = self.workouts.get(req.params["key"])
        if rec is None or rec["user"] != user.id:
            raise ApiError(suunto_error(404, "404", "Workout not found"))
        return rec

    def _list_workouts(self, req: Request) -> Response:
        user, _ = self.authorize_bearer(req)
        try:
            since = int(req.q("since") or 0)
            until = int(req.q("until")) if req.q("until") else None
            limit = min(max(int(req.q("limit") or 50), 1), 100000)
            offset = max(int(req.q("offset") or 0), 0)
        except ValueError:
            return suunto_error(400, "400", "since, until, limit and offset are integers (epoch milliseconds)")
        by_modification = (req.q("filter-by-modification-time") or "true").lower() == "true"
        field = "created" if by_modification else "startTime"
        with self.lock:
            mine = sorted((r for r in self.workouts.values() if r["user"] == user.id
                           and r[field] >= since and (until is None or r[field] < until)),
                          key=lambda r: r["startTime"])
        page = mine[offset:offset + limit]
        return json_response(200, {"error": None, "metadata": {"workoutcount": str(len(page)),
                                                               "until": str(until or int(self.now() * 1000))},
                                   "payload": [self.workout_json(r) for r in page]})

    def _get_workout(self, req: Request) -> Response:
        return json_response(200, {"error": None, "metadata": {}, "payload": self.workout_json(self._owned(req))})

    def _get_fit(self, req: Request) -> Response:
        rec = self._owned(req)
        with self.lock:
            pending = self._fit_pending.get(rec["workoutKey"], int(self.opt("fit_pending_requests")))
            self._fit_pending[rec["workoutKey"]] = max(0, pending - 1)
        if pending > 0:
            return json_response(200, {"error": None, "metadata": {"status": "PROCESSING"}, "payload": None})
        return Response(200, rec["fit"], [("Content-Type", "application/octet-stream"),
                                          ("Content-Disposition", f'attachment; filename="{rec["workoutKey"]}.fit"')])

    # -------------------------------------------------------------------------------------- 24/7 samples

    def create_samples(self, user: Any, kind: str = "activity", start: float | None = None, count: int = 6,
                       interval_s: int = 600, utc_offset_s: int = 7200, samples: list | None = None,
                       notify: bool = False) -> dict:
        """24/7 samples of `kind`: `samples` as given, or `count` generated ones every `interval_s` from
        `start` (activity: HR, HRExt, StepCount, EnergyConsumption, SpO2, HRV; sleep: one night;
        recovery: Balance, StressState), timestamps local at `utc_offset_s`. Returns {"samples"} and
        "webhook" with `notify` (the SUUNTO_247_*_CREATED event carries them inline)."""
        if kind not in SAMPLE_KINDS:
            raise ApiError(json_response(400, {"error": f"kind is one of {', '.join(SAMPLE_KINDS)}"}))
        owner = self.get_user(user)
        start = int(start if start is not None else self.now() - count * interval_s)
        rng = seeded_rng(self.seed, "suunto", kind, owner.id, start)
        if samples is None:
            samples = []
            for i in range(count):
                t = start + i * interval_s
                if kind == "activity":
                    hr = int(round(62 + 8 * math.sin(i / 5) + rng.gauss(0, 1)))
                    entry = {"HR": hr, "HRExt": {"Min": hr - 4, "Max": hr + 6}, "StepCount": int(rng.uniform(0, 400)),
                             "EnergyConsumption": round(rng.uniform(20000, 60000), 1)}
                    if i % 3 == 0:
                        entry["SpO2"] = round(rng.uniform(0.94, 0.99), 2)
                        entry["HRV"] = int(rng.uniform(25, 70))
                elif kind == "sleep":
                    end = t + 7 * 3600 + 1800
                    entry = {"SleepId": int(t), "BedtimeStart": iso_ms(t, utc_offset_s),
                             "BedtimeEnd": iso_ms(end, utc_offset_s),
                             "Duration": end - t, "DeepSleepDuration": 5400, "LightSleepDuration": 15600,
                             "REMSleepDuration": 5400, "SleepQualityScore": 82, "HRAvg": 55,
                             "HRMin": 46 + i, "AvgHRV": 61, "MaxSpo2": 0.98, "IsNap": False}
                    t = end
                else:
                    entry = {"Balance": round(rng.uniform(0.2, 0.9), 2), "StressState": int(rng.uniform(1, 5))}
                samples.append({"timestamp": iso_ms(t, utc_offset_s), "entryData": entry})
        with self.lock:
            self.samples.setdefault((owner.id, kind), []).extend(samples)
        out: dict = {"samples": samples}
        if notify:
            out["webhook"] = self.notify(type=EVENT_OF_KIND[kind], username=owner.id, samples=samples)
        return out

    def _get_samples(self, req: Request) -> Response:
        user, _ = self.authorize_bearer(req)
        kind = req.params["kind"]
        if kind not in SAMPLE_KINDS:
            return apim_error(404, "Resource not found")
        try:
            lo, hi = int(req.q("from") or ""), int(req.q("to") or "")
        except ValueError:
            return suunto_error(400, "400", "from and to are required (epoch milliseconds)")
        if hi <= lo or hi - lo > MAX_247_WINDOW_MS:
            return suunto_error(400, "400", "Maximum fetch interval duration is 28 days")
        with self.lock:
            rows = list(self.samples.get((user.id, kind), []))
        out = [s for s in rows if lo <= int(parse_iso(s["timestamp"]) * 1000) < hi]
        return json_response(200, out)

    # ----------------------------------------------------------------------------------------- webhooks

    def preprovision_webhook(self, url: str) -> None:
        """The notification URL set in the app's settings in the API Zone portal."""
        self.notification_urls = [url]

    def subscriptions_state(self) -> list:
        return [{"url": u, "notification_secret_set": bool(self.opt("notification_secret"))}
                for u in self.notification_urls]

    def webhook_event(self, type: str = "WORKOUT_CREATED", username: Any = None, workout_key: str | None = None,
                      samples: list | None = None, legacy_form: bool = False, secret: str | None = None,
                      target: str | None = None) -> list:
        """One notification to the configured URL (or `target`): WORKOUT_CREATED with the workout object
        and gear (or, with `legacy_form`, the form fields username and workoutid), ROUTE_CREATED, or a
        SUUNTO_247_*_CREATED with `samples`; signed with the notification secret (or `secret`)."""
        dests = [target] if target else list(self.notification_urls)
        if not dests:
            return []
        user = str(username if username is not None else self.default_user_id)
        headers: dict = {}
        if type == "WORKOUT_CREATED" and legacy_form:
            body = urlencode([("username", user), ("workoutid", workout_key or "")]).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif type == "WORKOUT_CREATED":
            with self.lock:
                rec = self.workouts.get(workout_key or "")
            workout = self.workout_json(rec) if rec else {"workoutKey": workout_key or ""}
            gear = workout.pop("gear", None)
            for k in ("created",):
                workout.pop(k, None)
            payload: dict = {"type": type, "username": user, "workout": workout}
            if gear:
                payload["gear"] = {k: gear[k] for k in ("manufacturer", "name", "productType")}
            body = compact(payload)
        elif type == "ROUTE_CREATED":
            body = compact({"type": type, "username": user, "route": {"id": secrets.token_hex(12)}})
        else:
            body = compact({"type": type, "username": user, "samples": samples or []})
        key = secret if secret is not None else self.opt("notification_secret")
        headers["X-HMAC-SHA256-Signature"] = sign(key, body)
        return [lambda dest=dest: self.deliver(dest, body, headers, type, success=lambda s: 200 <= s < 300)
                for dest in dests]

    # ------------------------------------------------------------------------------------------ control

    def _ctl_workout(self, req: Request) -> Response:
        b = req.json()
        if "user" not in b:
            return json_response(400, {"error": "user is required"})
        kw = {k: b[k] for k in ("start", "seconds", "hr_base", "hr_values", "speed_mps", "activity_id", "fit_file",
                                "utc_offset_min", "notify") if k in b}
        return json_response(201, self.create_workout(b["user"], **kw))

    def _ctl_samples(self, req: Request) -> Response:
        b = req.json()
        if "user" not in b:
            return json_response(400, {"error": "user is required"})
        kw = {k: b[k] for k in ("kind", "start", "count", "interval_s", "utc_offset_s", "samples", "notify") if k in b}
        return json_response(201, self.create_samples(b["user"], **kw))
