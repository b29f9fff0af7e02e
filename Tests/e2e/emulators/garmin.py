"""Garmin Connect Developer Program emulator: Health API and Activity API with OAuth 2.0 PKCE.

Follows what Garmin documents for partners (its OAuth2 PKCE document, the Health API and Activity API
specifications, as quoted by integrators — Nango, open-wearables, RADAR-base — since Garmin keeps the
originals behind its developer portal):

- authorize at connect.garmin.com/oauth2Confirm with **PKCE S256 required** and no scopes: the
  consent page lists permissions (ACTIVITY_EXPORT, HEALTH_EXPORT, WORKOUT_IMPORT, COURSE_IMPORT,
  HISTORICAL_DATA_EXPORT), the last one unticked by default; token at
  diauth.garmin.com/di-oauth2-service/oauth/token with the client credentials in the form body;
  refresh answers a new refresh token.
- `GET /wellness-api/rest/user/id` → `{"userId"}`, `GET …/user/permissions` → `{"permissions"}`,
  `DELETE …/user/registration` (the partner deregisters the user; the grant dies).
- Delivery per summary type, configured per type in the API Endpoints tool: **push** posts
  `{"<type>": [summary, …]}`, **ping** posts `{"<type>": [{"userId", "callbackURL"}]}` whose callback
  (`…/wellness-api/rest/<type>?uploadStartTimeInSeconds&uploadEndTimeInSeconds&token=`) answers the
  list with the user's bearer token. Every notification carries the `garmin-client-id` header; no
  signature. Garmin waits 30 s and retries otherwise.
- `activityFiles` are always pings: `{userId, summaryId, activityId, fileType (FIT|TCX|GPX),
  callbackURL, startTimeInSeconds, activityName, manual}`; the callback
  (`…/wellness-api/rest/activityFile?id&token`) answers the file's bytes.
- `deregistrations` `[{userId}]` when the user disconnects the app at Garmin, `userPermissionsChange`
  `[{userId, summaryId, permissions, changeTimeInSeconds}]` when the user changes what is shared.
- Backfill: `GET …/wellness-api/rest/backfill/{type}?summaryStartTimeInSeconds&summaryEndTimeInSeconds`
  answers 202 and delivers the stored summaries of that window later (push or ping, as configured);
  a window over 30 days (`backfill_max_days`) is 400, one already requested 409, and without
  HISTORICAL_DATA_EXPORT 403. Body names and path names differ for two types: `pulseox` / `pulseOx`,
  `allDayRespiration` / `respiration`.
- Errors are `{"errorMessage": "…"}`; 429 beyond `rate_limit_per_min` (100) API calls a minute.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from .base import (ApiError, Emulator, Request, Response, Route, add_query, compact, json_response, redirect,
                   seeded_rng)

DATA_DIR = Path(__file__).resolve().parent / "data"

PERMISSIONS = ("ACTIVITY_EXPORT", "HEALTH_EXPORT", "WORKOUT_IMPORT", "COURSE_IMPORT", "HISTORICAL_DATA_EXPORT")
# Body key -> the path its pull callback and its backfill live under.
SUMMARY_PATHS = {
    "dailies": "dailies", "epochs": "epochs", "sleeps": "sleeps", "hrv": "hrv", "pulseox": "pulseOx",
    "allDayRespiration": "respiration", "bodyComps": "bodyComps", "bloodPressures": "bloodPressures",
    "stressDetails": "stressDetails", "skinTemp": "skinTemp", "userMetrics": "userMetrics",
    "activities": "activities", "activityDetails": "activityDetails",
}
BACKFILL_TYPES = {path: key for key, path in SUMMARY_PATHS.items()}


def garmin_error(status: int, message: str, headers=()) -> Response:
    return json_response(status, {"errorMessage": message}, headers)


def activity_sample(t0: int, i: int, fields: tuple[str, ...]) -> dict:
    """Element `i` (second `i`) of a generated activity: smooth, deterministic values per field, the way
    Garmin's activityDetails samples read (airTemperatureCelcius spelled as Garmin spells it)."""
    s: dict[str, Any] = {"startTimeInSeconds": t0 + i}
    if "position" in fields:
        s["latitudeInDegree"] = round(47.3769 + 0.0001 * math.sin(i / 300.0) + i * 1e-6, 7)
        s["longitudeInDegree"] = round(8.5417 + 0.0001 * math.cos(i / 300.0) + i * 1e-6, 7)
    if "elevation" in fields:
        s["elevationInMeters"] = round(410.0 + 25.0 * math.sin(i / 900.0), 2)
    if "temperature" in fields:
        s["airTemperatureCelcius"] = float(18 + (i // 600) % 6)
    if "heart_rate" in fields:
        s["heartRate"] = 120 + int(20 * math.sin(i / 240.0)) + (i % 7)
    if "speed" in fields:
        s["speedMetersPerSecond"] = round(2.8 + 0.4 * math.sin(i / 120.0), 3)
    if "cadence" in fields:
        s["stepsPerMinute"] = float(160 + (i % 11))
    if "power" in fields:
        s["powerInWatts"] = 240 + int(30 * math.cos(i / 200.0))
    if "distance" in fields:
        s["totalDistanceInMeters"] = round(i * 2.8 + 0.4 * 120 * (1 - math.cos(i / 120.0)), 2)
    s["timerDurationInSeconds"] = i
    s["clockDurationInSeconds"] = i
    s["movingDurationInSeconds"] = i
    return s


ALL_FIELDS = ("position", "elevation", "temperature", "heart_rate", "speed", "cadence", "power", "distance")


class GarminEmulator(Emulator):
    vendor = "garmin"
    display_name = "Garmin Connect"
    scope_separator = " "
    scopes_supported = PERMISSIONS
    default_scopes = PERMISSIONS          # shown as the consent page's permission checkboxes
    authorize_path = "/oauth2Confirm"
    token_path = "/di-oauth2-service/oauth/token"
    client_auth_methods = ("body",)
    supports_pkce = True
    user_id_type = str
    default_user_id = "7f3b2c1e-9d4a-4e5b-8c6f-0a1b2c3d4e5f"

    VENDOR_DEFAULTS = {
        "access_ttl_s": 86400,
        "refresh_ttl_s": 90 * 86400,
        "webhook_timeout_s": 30.0,        # Garmin waits 30 s for the 200
        "webhook_attempts": 3,
        "mode": "push",                   # default delivery per summary type: push | ping
        "modes": {},                      # per type overrides, e.g. {"dailies": "ping"}
        "notification_url_base": None,    # base of callback URLs in pings; None: this emulator (SSRF tests)
        "backfill_max_days": 30,
        "rate_limit_per_min": 100,
        "send_client_id": True,           # the garmin-client-id header on notifications
    }

    def __init__(self, *args, **kwargs):
        self.summaries: list[dict] = []          # {type, user, summary, uploaded_at}
        self.files: dict[str, dict] = {}         # file id -> {user, bytes, fileType, activityId}
        self.pull_tokens: dict[str, Any] = {}    # callback token -> user id
        self.backfills: list[dict] = []          # requests received: {user, type, start, end, status}
        self._backfill_seen: set = set()
        self._next_activity = 21_000_000_000
        super().__init__(*args, **kwargs)

    def urls(self) -> dict[str, str]:
        return {**super().urls(), "api": self.url("/wellness-api/rest")}

    def new_token(self, kind: str) -> str:
        return secrets.token_urlsafe(48) if kind != "code" else secrets.token_urlsafe(24)

    def new_user_id(self) -> str:
        self._next_user += 1
        h = "%032x" % seeded_rng(self.seed, "garmin", "user", self._next_user).getrandbits(128)
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    # ------------------------------------------------------------------------------------------ routes

    def register_routes(self) -> None:
        r = self.route
        base = "/wellness-api/rest"
        r("GET", f"{base}/user/id", self._user_id, api=True)
        r("GET", f"{base}/user/permissions", self._user_permissions, api=True)
        r("DELETE", f"{base}/user/registration", self._deregister, api=True)
        r("GET", f"{base}/backfill/{{type}}", self._backfill, api=True)
        r("GET", f"{base}/activityFile", self._activity_file, api=True)
        r("GET", f"{base}/{{path}}", self._pull, api=True)
        r("POST", "/_emulator/summaries", self._ctl_summaries, control=True)
        r("POST", "/_emulator/activities", self._ctl_activity, control=True)
        r("POST", "/_emulator/activity_files", self._ctl_activity_file, control=True)
        r("POST", "/_emulator/users/{user}/permissions", self._ctl_permissions, control=True)

    # -------------------------------------------------------------------------------- OAuth specifics

    def _authorize_get(self, req: Request) -> Response:
        # Garmin requires PKCE with S256 and takes no scope parameter (permissions are chosen on the page).
        req.query.pop("scope", None)
        redirect_uri = req.q("redirect_uri")
        if req.q("client_id") == self.client_id and redirect_uri and self._redirect_allowed(redirect_uri) and (
                not req.q("code_challenge") or req.q("code_challenge_method") != "S256"):
            params = [("error", "invalid_request"), ("error_description", "PKCE with code_challenge_method=S256 is required")]
            if req.q("state") is not None:
                params.append(("state", req.q("state")))
            return redirect(add_query(redirect_uri, params))
        return super()._authorize_get(req)

    def consent_page(self, request_id: str, scopes: list[str]) -> str:
        # Historical data is off by default on Garmin's consent page: the user must tick it.
        return super().consent_page(request_id, scopes).replace(
            'value="HISTORICAL_DATA_EXPORT" checked', 'value="HISTORICAL_DATA_EXPORT"')

    def token_body(self, grant, access, refresh, exchange) -> dict:
        body = {"access_token": access.token, "token_type": "bearer",
                "expires_in": int(round(access.expires_at - self.now())), "jti": secrets.token_hex(16)}
        if refresh is not None:
            body["refresh_token"] = refresh.token
            body["refresh_token_expires_in"] = int(self.opt("refresh_ttl_s"))
        return body

    def unauthorized(self, req, reason) -> Response:
        return garmin_error(401, f"Unauthorized: {reason}", [("WWW-Authenticate", 'Bearer error="invalid_token"')])

    def insufficient_scope(self, req, needed) -> Response:
        return garmin_error(403, f"The user did not grant {' or '.join(needed)}")

    def not_found(self, req) -> Response:
        return garmin_error(404, "Not Found")

    def server_error(self, req, status) -> Response:
        return garmin_error(status, "Internal Server Error" if status == 500 else "Service Unavailable")

    def too_many_requests(self, req, route) -> Response:
        return garmin_error(429, "Rate limit exceeded", self.retry_after_headers())

    def check_rate_limit(self, req: Request, route: Route) -> Response | None:
        with self.lock:
            (usage, _), = self.rate.hit("app", (60,), self.now())
        return self.too_many_requests(req, route) if usage > int(self.opt("rate_limit_per_min")) else None

    def permissions_of(self, user_id: Any) -> list[str]:
        """What the user's newest live grant shares ([] without one)."""
        with self.lock:
            live = [g for g in self.user_grants[self.user_key(user_id)] if not g.revoked]
            return list(live[-1].scopes) if live else []

    def revoke_user(self, user_id: Any, via: str = "user") -> int:
        """The user disconnects the app in Garmin Connect: grants die and a deregistration is pushed."""
        n = super().revoke_user(user_id, via)
        self.notify_async(body={"deregistrations": [{"userId": str(self.user_key(user_id))}]})
        return n

    # ------------------------------------------------------------------------------------ API: account

    def _user_id(self, req: Request) -> Response:
        user, _ = self.authorize_bearer(req)
        return json_response(200, {"userId": str(user.id)})

    def _user_permissions(self, req: Request) -> Response:
        _, grant = self.authorize_bearer(req)
        return json_response(200, {"permissions": list(grant.scopes)})

    def _deregister(self, req: Request) -> Response:
        _, grant = self.authorize_bearer(req)
        with self.lock:
            if not grant.revoked:
                self._revoke_grant(grant, "deregister")
        return Response(204)

    # ---------------------------------------------------------------------------------- API: delivery

    def mode_of(self, summary_type: str) -> str:
        return self.opt("modes").get(summary_type, self.opt("mode"))

    def _callback_base(self) -> str:
        return (self.opt("notification_url_base") or self.base_url).rstrip("/") + "/wellness-api/rest"

    def _pull_token(self, user_id: Any) -> str:
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.pull_tokens[token] = user_id
        return token

    def _pull(self, req: Request) -> Response:
        """A ping's callback: the user's summaries of one type uploaded in the window."""
        path = req.params["path"]
        summary_type = BACKFILL_TYPES.get(path)
        if summary_type is None:
            return self.not_found(req)
        user, grant = self.authorize_bearer(req)
        with self.lock:
            token_user = self.pull_tokens.get(req.q("token") or "")
        if token_user != user.id:
            return garmin_error(400, "invalid or missing pull token")
        try:
            start = int(req.q("uploadStartTimeInSeconds"))
            end = int(req.q("uploadEndTimeInSeconds"))
        except (TypeError, ValueError):
            return garmin_error(400, "uploadStartTimeInSeconds and uploadEndTimeInSeconds are required")
        if end - start > 86400:
            return garmin_error(400, "the upload window may not exceed 24 hours")
        with self.lock:
            found = [s["summary"] for s in self.summaries if s["type"] == summary_type and s["user"] == user.id
                     and start <= s["uploaded_at"] < end]
        return Response(200, compact(found), [("Content-Type", "application/json;charset=UTF-8")])

    def _activity_file(self, req: Request) -> Response:
        user, _ = self.authorize_bearer(req)
        with self.lock:
            token_user = self.pull_tokens.get(req.q("token") or "")
            f = self.files.get(req.q("id") or "")
        if token_user != user.id:
            return garmin_error(400, "invalid or missing pull token")
        if f is None or f["user"] != user.id:
            return garmin_error(404, "no such activity file")
        return Response(200, f["bytes"], [("Content-Type", "application/octet-stream")])

    def deliver_summaries(self, user_id: Any, summary_type: str, summaries: list[dict], notify: bool = True,
                          mode: str | None = None) -> dict | None:
        """Stores summaries (uploaded now) and, with `notify`, pushes or pings them the configured way."""
        uid = self.user_key(user_id)
        now = int(self.now())
        with self.lock:
            for s in summaries:
                self._store(summary_type, uid, s, now)
        if not notify:
            return None
        return self.notify(body=self.notification_body(uid, summary_type, summaries, now, mode))

    def _store(self, summary_type: str, uid: Any, summary: dict, uploaded_at: int) -> None:
        """Keeps a summary; an updated one (same summaryId) replaces the earlier version, as at Garmin.
        Caller holds the lock."""
        sid = summary.get("summaryId")
        self.summaries = [s for s in self.summaries if sid is None or not (
            s["type"] == summary_type and s["user"] == uid and s["summary"].get("summaryId") == sid)]
        self.summaries.append({"type": summary_type, "user": uid, "summary": summary, "uploaded_at": uploaded_at})

    def notification_body(self, uid: Any, summary_type: str, summaries: list[dict], uploaded_at: int,
                          mode: str | None = None) -> dict:
        if (mode or self.mode_of(summary_type)) == "ping":
            url = add_query(f"{self._callback_base()}/{SUMMARY_PATHS[summary_type]}",
                            [("uploadStartTimeInSeconds", str(uploaded_at)),
                             ("uploadEndTimeInSeconds", str(uploaded_at + 1)), ("token", self._pull_token(uid))])
            return {summary_type: [{"userId": str(uid), "callbackURL": url}]}
        return {summary_type: [{"userId": str(uid), **s} for s in summaries]}

    def webhook_event(self, body: dict | bytes | None = None, target: str | None = None) -> list:
        """One notification body (an object of lists keyed by summary type) to the configured endpoint
        (one URL for every type, as the API Endpoints tool is usually set up) or to `target`."""
        dest = target or self.webhook_url
        if dest is None or body is None:
            return []
        raw = body if isinstance(body, bytes) else compact(body)
        label = ",".join(sorted(body)) if isinstance(body, dict) else "raw"
        headers = {"garmin-client-id": self.client_id} if self.opt("send_client_id") else {}
        return [lambda: self.deliver(dest, raw, headers, label)]

    # ----------------------------------------------------------------------------------- API: backfill

    def _backfill(self, req: Request) -> Response:
        path = req.params["type"]
        summary_type = BACKFILL_TYPES.get(path)
        if summary_type is None:
            return garmin_error(404, f"unknown summary type {path}")
        user, grant = self.authorize_bearer(req)
        try:
            start = int(req.q("summaryStartTimeInSeconds"))
            end = int(req.q("summaryEndTimeInSeconds"))
        except (TypeError, ValueError):
            return garmin_error(400, "summaryStartTimeInSeconds and summaryEndTimeInSeconds are required")
        record = {"user": str(user.id), "type": path, "start": start, "end": end}
        if end <= start or end - start > int(self.opt("backfill_max_days")) * 86400:
            status, resp = 400, garmin_error(400, f"the time range must be positive and at most "
                                                  f"{self.opt('backfill_max_days')} days")
        elif "HISTORICAL_DATA_EXPORT" not in grant.scopes:
            status, resp = 403, garmin_error(403, "the user has not granted HISTORICAL_DATA_EXPORT")
        else:
            key = (user.id, path, start, end)
            with self.lock:
                duplicate = key in self._backfill_seen
                self._backfill_seen.add(key)
            if duplicate:
                status, resp = 409, garmin_error(409, "duplicate backfill request")
            else:
                status, resp = 202, Response(202)
                threading.Thread(target=self._deliver_backfill, args=(user.id, summary_type, start, end),
                                 daemon=True).start()
        with self.lock:
            self.backfills.append({**record, "status": status})
        return resp

    def _deliver_backfill(self, uid: Any, summary_type: str, start: int, end: int) -> None:
        time.sleep(0.05)    # after the 202 has gone out
        with self.lock:
            found = [s["summary"] for s in self.summaries if s["type"] == summary_type and s["user"] == uid
                     and start <= _summary_time(s["summary"]) < end]
        if not found:
            return
        now = int(self.now())
        if self.mode_of(summary_type) == "ping":
            # The ping's callback window names the backfill's delivery time: the summaries are served anew.
            with self.lock:
                for s in found:
                    self._store(summary_type, uid, s, now)
        self.notify(body=self.notification_body(uid, summary_type, found, now))

    # ----------------------------------------------------------------------------------- data makers

    def _summary_id(self, prefix: str, uid: Any, t: int) -> str:
        """Garmin-looking summary ids (`x4a5b6c7d-65f1e2a0`), the same for the same user and time."""
        return f"{prefix}{hashlib.sha256(f'{self.seed}:{uid}'.encode()).hexdigest()[:8]}-{t:x}"

    def make_dailies(self, user: Any, start: int, seconds: int = 86400, hr_interval_s: int = 15,
                     resting: int = 52, offset_s: int = 0) -> dict:
        """A daily summary: timeOffsetHeartRateSamples every `hr_interval_s` from `start` (the local day's
        start), totals, resting heart rate."""
        rng = seeded_rng(self.seed, "garmin", "daily", user, start)
        hr = {str(k): 60 + int(25 * math.sin(k / 7200.0)) + rng.randint(0, 5)
              for k in range(0, seconds, hr_interval_s)}
        return {"summaryId": self._summary_id("x", user, start), "calendarDate": time.strftime(
            "%Y-%m-%d", time.gmtime(start + offset_s)), "activityType": "WALKING", "activeKilocalories": 612,
            "bmrKilocalories": 1720, "steps": 9120, "distanceInMeters": 7043.0, "durationInSeconds": seconds,
            "activeTimeInSeconds": 5400, "startTimeInSeconds": start, "startTimeOffsetInSeconds": offset_s,
            "moderateIntensityDurationInSeconds": 1200, "vigorousIntensityDurationInSeconds": 600,
            "floorsClimbed": 8, "minHeartRateInBeatsPerMinute": min(hr.values()),
            "averageHeartRateInBeatsPerMinute": round(sum(hr.values()) / len(hr)),
            "maxHeartRateInBeatsPerMinute": max(hr.values()), "restingHeartRateInBeatsPerMinute": resting,
            "timeOffsetHeartRateSamples": hr, "averageStressLevel": 31, "maxStressLevel": 88,
            "stepsGoal": 8000, "floorsClimbedGoal": 10}

    def make_epochs(self, user: Any, start: int, count: int = 4, offset_s: int = 0) -> list[dict]:
        """Consecutive 15-minute epochs, each split into a SEDENTARY and a WALKING record as Garmin does."""
        out = []
        for n in range(count):
            t = start + n * 900
            rng = seeded_rng(self.seed, "garmin", "epoch", user, t)
            for activity, steps, kcal in (("SEDENTARY", 0, rng.randint(1, 4)),
                                          ("WALKING", rng.randint(100, 900), rng.randint(5, 30))):
                out.append({"summaryId": self._summary_id(activity[0].lower(), user, t),
                            "activityType": activity, "activeKilocalories": kcal, "steps": steps,
                            "distanceInMeters": round(steps * 0.78, 2), "durationInSeconds": 900,
                            "activeTimeInSeconds": 300 if steps else 0, "startTimeInSeconds": t,
                            "startTimeOffsetInSeconds": offset_s, "met": 1.0 if not steps else 2.9,
                            "intensity": "SEDENTARY" if not steps else "ACTIVE", "meanMotionIntensity": 2.0,
                            "maxMotionIntensity": 6.0})
        return out

    def make_sleep(self, user: Any, start: int, seconds: int = 7 * 3600, offset_s: int = 0) -> dict:
        """A night: sleepLevelsMap cycling light → deep → light → rem in 30-minute blocks, awake at the ends."""
        levels: dict[str, list] = {"deep": [], "light": [], "rem": [], "awake": []}
        cycle = ("light", "deep", "light", "rem")
        t, n = start, 0
        levels["awake"].append({"startTimeInSeconds": t, "endTimeInSeconds": t + 600})
        t += 600
        while t < start + seconds - 600:
            end = min(t + 1800, start + seconds - 600)
            levels[cycle[n % 4]].append({"startTimeInSeconds": t, "endTimeInSeconds": end})
            t, n = end, n + 1
        levels["awake"].append({"startTimeInSeconds": t, "endTimeInSeconds": start + seconds})
        dur = {k: sum(r["endTimeInSeconds"] - r["startTimeInSeconds"] for r in v) for k, v in levels.items()}
        return {"summaryId": self._summary_id("s", user, start), "calendarDate": time.strftime(
            "%Y-%m-%d", time.gmtime(start + seconds + offset_s)), "durationInSeconds": seconds,
            "startTimeInSeconds": start, "startTimeOffsetInSeconds": offset_s,
            "deepSleepDurationInSeconds": dur["deep"], "lightSleepDurationInSeconds": dur["light"],
            "remSleepInSeconds": dur["rem"], "awakeDurationInSeconds": dur["awake"], "sleepLevelsMap": levels,
            "validation": "ENHANCED_FINAL", "timeOffsetSleepSpo2": {"0": 95, "3600": 94},
            "timeOffsetSleepRespiration": {"60": 14.1, "120": 13.8},
            "overallSleepScore": {"value": 82, "qualifierKey": "GOOD"}}

    def make_series(self, summary_type: str, user: Any, start: int, count: int, step_s: int,
                    offset_s: int = 0) -> dict:
        """hrv (hrvValues, ms), pulseox (timeOffsetSpo2Values, %) or allDayRespiration
        (timeOffsetEpochToBreaths, breaths/min): `count` values `step_s` apart."""
        rng = seeded_rng(self.seed, "garmin", summary_type, user, start)
        if summary_type == "hrv":
            values = {str(k * step_s): rng.randint(30, 70) for k in range(count)}
            return {"summaryId": self._summary_id("h", user, start), "calendarDate": time.strftime(
                "%Y-%m-%d", time.gmtime(start + offset_s)), "lastNightAvg": round(sum(values.values()) / count),
                "lastNight5MinHigh": max(values.values()), "startTimeOffsetInSeconds": offset_s,
                "durationInSeconds": count * step_s, "startTimeInSeconds": start, "hrvValues": values}
        if summary_type == "pulseox":
            values = {str(k * step_s): rng.randint(92, 99) for k in range(count)}
            return {"summaryId": self._summary_id("p", user, start), "calendarDate": time.strftime(
                "%Y-%m-%d", time.gmtime(start + offset_s)), "startTimeInSeconds": start,
                "durationInSeconds": count * step_s, "startTimeOffsetInSeconds": offset_s,
                "timeOffsetSpo2Values": values, "onDemand": False}
        values = {str(k * step_s): round(rng.uniform(11.5, 17.5), 2) for k in range(count)}
        return {"summaryId": self._summary_id("r", user, start), "startTimeInSeconds": start,
                "durationInSeconds": count * step_s, "startTimeOffsetInSeconds": offset_s,
                "timeOffsetEpochToBreaths": values}

    def make_body_comp(self, user: Any, t: int, weight_g: int = 72_450, fat: float = 18.4) -> dict:
        return {"summaryId": self._summary_id("b", user, t), "measurementTimeInSeconds": t,
                "measurementTimeOffsetInSeconds": 3600, "muscleMassInGrams": 33_000, "boneMassInGrams": 3_100,
                "bodyWaterInPercent": 57.2, "bodyFatInPercent": fat, "bodyMassIndex": 22.9, "weightInGrams": weight_g}

    def make_blood_pressure(self, user: Any, t: int, systolic: int = 121, diastolic: int = 79, pulse: int = 64) -> dict:
        return {"summaryId": self._summary_id("bp", user, t), "measurementTimeInSeconds": t,
                "measurementTimeOffsetInSeconds": 3600, "systolic": systolic, "diastolic": diastolic,
                "pulse": pulse, "sourceType": "MANUAL"}

    def create_activity(self, user: Any, start: int | None = None, seconds: int = 600,
                        fields: tuple[str, ...] = ALL_FIELDS, device_name: str = "forerunner965",
                        notify: bool = False, mode: str | None = None) -> dict:
        """An activity (1-second samples, `fields` of ALL_FIELDS) stored as its `activities` summary and
        its `activityDetails`; with `notify` the details are pushed (or pinged). Returns
        {"activity", "details", "webhook"}; the details hold `samples` exactly as sent."""
        uid = self.user_key(user)
        start = int(self.now() - seconds - 300 if start is None else start)
        with self.lock:
            self._next_activity += 1
            activity_id = self._next_activity
        samples = [activity_sample(start, i, tuple(fields)) for i in range(int(seconds))]
        summary = {"summaryId": str(activity_id), "activityId": activity_id, "activityName": "Long Run",
                   "durationInSeconds": int(seconds), "startTimeInSeconds": start, "startTimeOffsetInSeconds": 3600,
                   "activityType": "RUNNING", "averageHeartRateInBeatsPerMinute": 130,
                   "maxHeartRateInBeatsPerMinute": 167, "deviceName": device_name,
                   "distanceInMeters": samples[-1].get("totalDistanceInMeters", 0.0)}
        details = {"summaryId": f"{activity_id}-detail", "activityId": activity_id, "summary": summary,
                   "samples": samples, "laps": [{"startTimeInSeconds": start}]}
        self.deliver_summaries(uid, "activities", [summary], notify=False)
        webhook = self.deliver_summaries(uid, "activityDetails", [details], notify=notify, mode=mode)
        return {"activity": summary, "details": details, "webhook": webhook}

    def create_activity_file(self, user: Any, fixture: str = "garmin-fenix5-run-hrv.fit", file_type: str = "FIT",
                             activity_id: int | None = None, data: bytes | None = None, notify: bool = True,
                             target: str | None = None) -> dict:
        """An activity file (a fixture from data/, or `data`) announced in `activityFiles` (always a ping)."""
        uid = self.user_key(user)
        with self.lock:
            self._next_activity += 1
            activity_id = activity_id or self._next_activity
        file_id = str(activity_id * 10 + 7)
        raw = data if data is not None else (DATA_DIR / fixture).read_bytes()
        with self.lock:
            self.files[file_id] = {"user": uid, "bytes": raw, "fileType": file_type, "activityId": activity_id}
        url = add_query(f"{self._callback_base()}/activityFile", [("id", file_id), ("token", self._pull_token(uid))])
        item = {"userId": str(uid), "summaryId": str(activity_id), "activityId": activity_id,
                "fileType": file_type, "callbackURL": url, "startTimeInSeconds": int(self.now()) - 600,
                "activityName": "Run", "manual": False}
        result = {"activityId": activity_id, "file_id": file_id, "item": item, "bytes": len(raw)}
        if notify:
            result["webhook"] = self.notify(body={"activityFiles": [item]}, target=target)
        return result

    def change_permissions(self, user: Any, permissions: list[str], notify: bool = True) -> dict | None:
        """The user changes what is shared at Garmin: the live grant's permissions change and
        `userPermissionsChange` is pushed."""
        uid = self.user_key(user)
        with self.lock:
            for g in self.user_grants[uid]:
                if not g.revoked:
                    g.scopes = list(permissions)
        if not notify:
            return None
        now = int(self.now())
        return self.notify(body={"userPermissionsChange": [{"userId": str(uid), "summaryId": f"x{now:x}",
                                                            "permissions": list(permissions),
                                                            "changeTimeInSeconds": now}]})

    # ----------------------------------------------------------------------------------------- control

    def state(self, brief: bool = False, user: Any = None) -> dict:
        out = super().state(brief, user)
        with self.lock:
            out["backfills"] = list(self.backfills)
            out["summaries_stored"] = len(self.summaries)
        return out

    def _ctl_summaries(self, req: Request) -> Response:
        b = req.json()
        if "user" not in b or b.get("type") not in SUMMARY_PATHS or not isinstance(b.get("summaries"), list):
            return json_response(400, {"error": "user, a known type and a summaries list are required"})
        result = self.deliver_summaries(b["user"], b["type"], b["summaries"], notify=bool(b.get("notify", True)),
                                        mode=b.get("mode"))
        return json_response(201, {"webhook": result})

    def _ctl_activity(self, req: Request) -> Response:
        b = req.json()
        if "user" not in b:
            return json_response(400, {"error": "user is required"})
        kw = {k: b[k] for k in ("start", "seconds", "device_name", "notify", "mode") if k in b}
        if "fields" in b:
            kw["fields"] = tuple(b["fields"])
        made = self.create_activity(b["user"], **kw)
        return json_response(201, {"activity": made["activity"], "webhook": made["webhook"],
                                   "samples": len(made["details"]["samples"])})

    def _ctl_activity_file(self, req: Request) -> Response:
        b = req.json()
        if "user" not in b:
            return json_response(400, {"error": "user is required"})
        kw = {k: b[k] for k in ("fixture", "file_type", "activity_id", "notify", "target") if k in b}
        return json_response(201, self.create_activity_file(b["user"], **kw))

    def _ctl_permissions(self, req: Request) -> Response:
        b = req.json()
        return json_response(200, {"webhook": self.change_permissions(req.params["user"], b.get("permissions", []))})


def _summary_time(summary: dict) -> int:
    """When a summary happened, for backfill windows (Garmin selects by summary start time)."""
    for key in ("startTimeInSeconds", "measurementTimeInSeconds"):
        if key in summary:
            return int(summary[key])
    return int(summary.get("summary", {}).get("startTimeInSeconds", 0))
