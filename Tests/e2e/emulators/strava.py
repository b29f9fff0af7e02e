"""Strava API v3 emulator.

Follows developers.strava.com: docs/authentication (authorize, token, deauthorize, the athlete in the
first token answer, comma-separated scopes echoed on the redirect), docs/webhooks (one push
subscription per app, the hub.challenge validation GET, events answered 200 within 2 s with up to
3 attempts), docs/rate-limits (15-minute and daily windows at :00/:15/:30/:45 and midnight UTC,
X-RateLimit-* and X-ReadRateLimit-* headers as "15min,daily") and the v3 reference for activities
and streams. Errors use Strava's Fault shape {"message", "errors": [{resource, field, code}]}, as
Strava answers them (a dead refresh token is RefreshToken/refresh_token/invalid, a wrong client
Application/client_id|client_secret/invalid, both 400).

Strava documents no webhook signature; `sign=True` adds X-Strava-Signature: t=<unix>,v1=<hex
HMAC-SHA256(client_secret, "<t>.<body>")> as several integrations expect (vector B6).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import secrets
import time
from typing import Any

from .base import (ApiError, Emulator, Request, Response, Route, add_query, compact, http_request, iso_z,
                   json_response, seeded_rng)

SCOPES = ("read", "read_all", "profile:read_all", "profile:write", "activity:read", "activity:read_all",
          "activity:write")
STREAM_KEYS = ("time", "distance", "latlng", "altitude", "velocity_smooth", "heartrate", "cadence", "watts",
               "temp", "moving", "grade_smooth")
RESOLUTION_POINTS = {"low": 100, "medium": 1000, "high": 10000}


def sign(client_secret: str, body: bytes, t: int) -> str:
    """The X-Strava-Signature value for `body` sent at Unix time `t` (vector B6)."""
    mac = hmac.new(client_secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def fault(status: int, message: str, resource: str, field: str, code: str, headers=()) -> Response:
    return json_response(status, {"message": message,
                                  "errors": [{"resource": resource, "field": field, "code": code}]}, headers)


def _tz_name(offset_s: int) -> str:
    sign_ = "+" if offset_s >= 0 else "-"
    hh, mm = divmod(abs(offset_s) // 60, 60)
    zone = "Etc/UTC" if offset_s == 0 else f"Etc/GMT{'-' if offset_s > 0 else '+'}{hh}"
    return f"(GMT{sign_}{hh:02d}:{mm:02d}) {zone}"


class StravaEmulator(Emulator):
    vendor = "strava"
    display_name = "Strava"
    scope_separator = ","
    scopes_supported = SCOPES
    default_scopes = ("read",)
    authorize_path = "/oauth/authorize"
    token_path = "/oauth/token"
    client_auth_methods = ("body",)
    user_id_type = int
    default_user_id = 134815          # the athlete of the docs' webhook example (vector A6)
    redirect_includes_scope = True

    VENDOR_DEFAULTS = {
        "access_ttl_s": 21600,
        "webhook_timeout_s": 2.0,
        "webhook_attempts": 3,
        "sign": False,
        "rate_limit_15min": 200,
        "rate_limit_daily": 2000,
        "read_rate_limit_15min": 100,
        "read_rate_limit_daily": 1000,
        "subscription_id": 120475,   # the id of the preprovisioned / first subscription (vector A6)
        "keep_access_if_valid_s": 0,  # Strava's documented rule is 3600: see the README
    }

    def __init__(self, *args, **kwargs):
        self.activities: dict[int, dict] = {}
        self._next_activity = 0
        self.subscriptions: dict[int, dict] = {}
        self._subs_created = 0
        super().__init__(*args, **kwargs)

    def urls(self) -> dict[str, str]:
        return {**super().urls(), "revoke": self.url("/oauth/deauthorize"), "api": self.url("/api/v3")}

    def new_user_id(self) -> int:
        self._next_user += 1
        return 1_000_000 + self._next_user

    # ------------------------------------------------------------------------------------------ routes

    def register_routes(self) -> None:
        r = self.route
        r("POST", "/oauth/deauthorize", self._deauthorize)
        r("GET", "/api/v3/athlete", self._athlete, api=True)
        r("GET", "/api/v3/athlete/activities", self._list_activities, api=True)
        r("GET", "/api/v3/activities/{id}", self._get_activity, api=True)
        r("GET", "/api/v3/activities/{id}/streams", self._get_streams, api=True)
        r("POST", "/api/v3/push_subscriptions", self._create_subscription)
        r("GET", "/api/v3/push_subscriptions", self._list_subscriptions)
        r("DELETE", "/api/v3/push_subscriptions/{id}", self._delete_subscription)
        r("POST", "/_emulator/activities", self._ctl_create_activity, control=True)
        r("POST", "/_emulator/activities/{id}/update", self._ctl_update_activity, control=True)
        r("DELETE", "/_emulator/activities/{id}", self._ctl_delete_activity, control=True)

    # ----------------------------------------------------------------------------------- answer shapes

    def token_error(self, error, status=400, description=None, field_name=None) -> Response:
        # Strava answers every token failure 400 with a Fault naming what was wrong.
        if error in ("invalid_client", "invalid_request"):
            return fault(400, "Bad Request", "Application", field_name or "client_id", "invalid")
        if error == "invalid_grant" and field_name == "refresh_token":
            return fault(400, "Bad Request", "RefreshToken", "refresh_token", "invalid")
        if error == "invalid_grant":
            return fault(400, "Bad Request", "AuthorizationCode", "code", "invalid")
        return fault(400, "Bad Request", "Application", "grant_type", "invalid")

    def token_body(self, grant, access, refresh, exchange) -> dict:
        body = {"token_type": "Bearer", "expires_at": int(access.expires_at),
                "expires_in": int(round(access.expires_at - self.now())),
                "refresh_token": refresh.token if refresh else None, "access_token": access.token}
        if exchange:
            body["athlete"] = self.athlete_summary(self.users[grant.user])
        return body

    def keep_current_tokens(self, rt):
        keep = float(self.opt("keep_access_if_valid_s"))
        at = rt.grant.latest_access
        if keep <= 0 or rt.state != "active" or at is None or at.expires_at - self.now() <= keep:
            return None
        return json_response(200, self.token_body(rt.grant, at, rt, exchange=False))

    def checks_redirect_uri_at_token(self) -> bool:
        return False   # Strava's token exchange takes no redirect_uri

    def unauthorized(self, req, reason) -> Response:
        return fault(401, "Authorization Error", "Athlete", "access_token", "invalid")

    def insufficient_scope(self, req, needed) -> Response:
        return fault(401, "Authorization Error", "AccessToken", "activity:read_permission", "missing")

    def not_found(self, req) -> Response:
        return json_response(404, {"message": "Resource Not Found", "errors": []})

    def server_error(self, req, status) -> Response:
        message = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}.get(status, "Error")
        return json_response(status, {"message": message, "errors": []})

    def too_many_requests(self, req, route) -> Response:
        headers = self._rate_headers(self._usage(count=False)) if route is not None and route.api else []
        return fault(429, "Rate Limit Exceeded", "Application", "rate limit", "exceeded",
                     [*headers, *self.retry_after_headers()])

    # ------------------------------------------------------------------------------------- rate limits

    def _usage(self, count: bool) -> tuple[int, int]:
        with self.lock:
            (u15, _), (ud, _) = self.rate.hit("app", (900, 86400), self.now(), count=count)
        return u15, ud

    def _rate_headers(self, usage: tuple[int, int]) -> list[tuple[str, str]]:
        u = f"{usage[0]},{usage[1]}"
        return [("X-RateLimit-Limit", f"{self.opt('rate_limit_15min')},{self.opt('rate_limit_daily')}"),
                ("X-RateLimit-Usage", u),
                ("X-ReadRateLimit-Limit", f"{self.opt('read_rate_limit_15min')},{self.opt('read_rate_limit_daily')}"),
                ("X-ReadRateLimit-Usage", u)]

    def check_rate_limit(self, req: Request, route: Route) -> Response | None:
        # Every emulated API call is a read ("non-upload"), so it counts in both families; a request
        # over the 15-minute limit still counts against the daily one.
        req.rate_usage = self._usage(count=True)
        u15, ud = req.rate_usage
        if (u15 > self.opt("rate_limit_15min") or ud > self.opt("rate_limit_daily")
                or u15 > self.opt("read_rate_limit_15min") or ud > self.opt("read_rate_limit_daily")):
            return fault(429, "Rate Limit Exceeded", "Application", "rate limit", "exceeded",
                         [*self._rate_headers(req.rate_usage), *self.retry_after_headers()])
        return None

    def rate_limit_headers(self, req, route) -> list[tuple[str, str]]:
        return self._rate_headers(req.rate_usage)

    # ---------------------------------------------------------------------------------------- athletes

    def athlete_summary(self, user) -> dict:
        first, _, last = user.name.partition(" ")
        return {"id": user.id, "username": f"athlete{user.id}", "resource_state": 2, "firstname": first,
                "lastname": last, "bio": None, "city": "London", "state": "England", "country": "United Kingdom",
                "sex": "M", "premium": False, "summit": False, "created_at": "2015-06-01T10:00:00Z",
                "updated_at": "2026-01-01T10:00:00Z", "badge_type_id": 0, "weight": 72.0,
                "profile_medium": "avatar/athlete/medium.png", "profile": "avatar/athlete/large.png",
                "friend": None, "follower": None}

    def _athlete(self, req: Request) -> Response:
        user, _ = self.authorize_bearer(req)
        return json_response(200, self.athlete_summary(user))

    def revoke_user(self, user_id, via="user") -> int:
        """The athlete revokes the app in their Strava settings: tokens die and the deauthorization
        event (athlete/update/authorized="false") is pushed."""
        n = super().revoke_user(user_id, via)
        if n:
            user = self.get_user(user_id)
            self.notify_async(object_type="athlete", object_id=user.id, aspect_type="update", owner_id=user.id,
                              updates={"authorized": "false"})
        return n

    def _deauthorize(self, req: Request) -> Response:
        form = req.form()
        token = form.get("access_token") or req.bearer()
        user, _ = self.authorize_bearer(req, token=token)
        # "invalidates all refresh tokens and access tokens that the application has for the athlete"
        self.revoke_user(user.id, via="deauthorize")
        return json_response(200, {"access_token": token})

    # -------------------------------------------------------------------------------------- activities

    def create_activity(self, user: Any, start: float | None = None, seconds: int = 600, hr_base: int = 120,
                        type: str = "Ride", name: str | None = None, private: bool = False,
                        device_name: str = "Garmin Edge 530", streams: dict | None = None,
                        notify: bool = False) -> dict:
        """Creates an activity with 1 s streams (all the same length, `seconds` points) generated from
        the seed; `streams` overrides generated ones (same length). Returns the activity as
        GET /activities/{id} shows it plus "streams" (keyed by type) and, with `notify`, "webhook"."""
        owner = self.get_user(user)
        seconds = int(seconds)
        if seconds < 2:
            raise ApiError(json_response(400, {"error": "seconds must be at least 2"}))
        start = int(self.now() - seconds - 3600 if start is None else start)
        with self.lock:
            self._next_activity += 1
            activity_id = 10_000_000_000 + self._next_activity
        data = self._generate_streams(activity_id, seconds, int(hr_base), type)
        for key, values in (streams or {}).items():
            if key not in STREAM_KEYS or len(values) != seconds:
                raise ApiError(json_response(400, {"error": f"stream {key} must be one of {STREAM_KEYS} with {seconds} points"}))
            data[key] = list(values)
        record = {"id": activity_id, "athlete": owner.id, "start": start, "seconds": seconds, "type": type,
                  "name": name or f"{'Morning' if (start // 3600) % 24 < 12 else 'Afternoon'} {type}",
                  "private": bool(private), "device_name": device_name, "streams": data, "deleted": False,
                  "external_id": f"emulator-{activity_id}.fit", "upload_id": 20_000_000_000 + self._next_activity}
        with self.lock:
            self.activities[activity_id] = record
        out = self.activity_json(record, detailed=True)
        out["streams"] = {k: list(v) for k, v in data.items()}
        if notify:
            out["webhook"] = self.notify(object_type="activity", object_id=activity_id, aspect_type="create",
                                         owner_id=owner.id, updates={})
        return out

    def update_activity(self, activity_id: int, notify: bool = True, **changes) -> dict:
        """Changes title/type/privacy (the fields Strava pushes updates for) and pushes the update."""
        rec = self._activity(int(activity_id))
        updates = {}
        if "name" in changes:
            rec["name"] = updates["title"] = str(changes["name"])
        if "type" in changes:
            rec["type"] = updates["type"] = str(changes["type"])
        if "private" in changes:
            rec["private"] = bool(changes["private"])
            updates["private"] = "true" if rec["private"] else "false"
        out = self.activity_json(rec, detailed=True)
        if notify:
            out["webhook"] = self.notify(object_type="activity", object_id=rec["id"], aspect_type="update",
                                         owner_id=rec["athlete"], updates=updates)
        return out

    def delete_activity(self, activity_id: int, notify: bool = True) -> dict:
        rec = self._activity(int(activity_id))
        rec["deleted"] = True
        out: dict = {"id": rec["id"], "deleted": True}
        if notify:
            out["webhook"] = self.notify(object_type="activity", object_id=rec["id"], aspect_type="delete",
                                         owner_id=rec["athlete"], updates={})
        return out

    def _activity(self, activity_id: int) -> dict:
        with self.lock:
            rec = self.activities.get(activity_id)
        if rec is None or rec["deleted"]:
            raise ApiError(fault(404, "Record Not Found", "Activity", "id", "invalid"))
        return rec

    def _generate_streams(self, activity_id: int, n: int, hr_base: int, sport: str) -> dict:
        rng = seeded_rng(self.seed, "strava", "activity", activity_id)
        run = sport in ("Run", "TrailRun", "Walk", "Hike")
        base_speed = 3.2 if run else 8.0
        lat, lng = 51.50 + rng.uniform(-0.05, 0.05), -0.12 + rng.uniform(-0.05, 0.05)
        heading = rng.uniform(0, 2 * math.pi)
        phase = rng.uniform(0, 2 * math.pi)
        s = {k: [] for k in STREAM_KEYS}
        dist = 0.0
        prev_alt = None
        for i in range(n):
            v = max(0.0, base_speed + 1.2 * math.sin(2 * math.pi * i / 300 + phase) + rng.gauss(0, 0.2))
            if i == 0:
                v = 0.0
            dist += v
            alt = 30.0 + 10.0 * math.sin(2 * math.pi * i / 900 + phase) + rng.gauss(0, 0.1)
            heading += rng.gauss(0, 0.02)
            lat += v * math.cos(heading) / 111_111
            lng += v * math.sin(heading) / (111_111 * math.cos(math.radians(lat)))
            s["time"].append(i)
            s["distance"].append(round(dist, 1))
            s["latlng"].append([round(lat, 6), round(lng, 6)])
            s["altitude"].append(round(alt, 1))
            s["velocity_smooth"].append(round(v, 2))
            hr = hr_base + 20 * (1 - math.exp(-i / 120)) + 5 * math.sin(2 * math.pi * i / 240 + phase)
            s["heartrate"].append(int(round(hr + rng.gauss(0, 1.5))))
            s["cadence"].append(int(round((85 if run else 88) + 4 * math.sin(2 * math.pi * i / 180) + rng.gauss(0, 2))))
            s["watts"].append(max(0, int(round((240 if run else 190) + 40 * math.sin(2 * math.pi * i / 200 + phase)
                                                + rng.gauss(0, 12)))))
            s["temp"].append(int(round(18 + 2 * math.sin(2 * math.pi * i / 3600))))
            s["moving"].append(v > 0.5)
            grade = 0.0 if prev_alt is None or v < 0.5 else (alt - prev_alt) / v * 100
            s["grade_smooth"].append(round(max(-30.0, min(30.0, grade)), 1))
            prev_alt = alt
        return s

    def activity_json(self, rec: dict, detailed: bool) -> dict:
        st = rec["streams"]
        owner = self.users[rec["athlete"]]
        moving = [v for v, m in zip(st["velocity_smooth"], st["moving"]) if m]
        gain = sum(max(0.0, b - a) for a, b in zip(st["altitude"], st["altitude"][1:]))
        distance = st["distance"][-1]
        moving_time = len(moving)
        local_start = rec["start"] + owner.utc_offset_s
        out = {
            "resource_state": 3 if detailed else 2,
            "athlete": {"id": owner.id, "resource_state": 1},
            "name": rec["name"], "distance": distance, "moving_time": moving_time,
            "elapsed_time": rec["seconds"], "total_elevation_gain": round(gain, 1),
            "type": rec["type"], "sport_type": rec["type"], "workout_type": None, "id": rec["id"],
            "start_date": iso_z(rec["start"]), "start_date_local": iso_z(local_start),
            "timezone": _tz_name(owner.utc_offset_s), "utc_offset": float(owner.utc_offset_s),
            "location_city": None, "location_state": None, "location_country": "United Kingdom",
            "achievement_count": 0, "kudos_count": 0, "comment_count": 0, "athlete_count": 1,
            "photo_count": 0, "map": {"id": f"a{rec['id']}", "summary_polyline": "", "resource_state": 2},
            "trainer": False, "commute": False, "manual": False, "private": rec["private"],
            "visibility": "only_me" if rec["private"] else "everyone", "flagged": False, "gear_id": None,
            "start_latlng": st["latlng"][0], "end_latlng": st["latlng"][-1],
            "average_speed": round(distance / moving_time, 3) if moving_time else 0.0,
            "max_speed": max(st["velocity_smooth"]),
            "average_cadence": round(sum(st["cadence"]) / len(st["cadence"]), 1),
            "average_temp": int(round(sum(st["temp"]) / len(st["temp"]))),
            "average_watts": round(sum(st["watts"]) / len(st["watts"]), 1),
            "kilojoules": round(sum(st["watts"]) / 1000, 1), "device_watts": True,
            "has_heartrate": True,
            "average_heartrate": round(sum(st["heartrate"]) / len(st["heartrate"]), 1),
            "max_heartrate": float(max(st["heartrate"])), "heartrate_opt_out": False,
            "display_hide_heartrate_option": True,
            "elev_high": max(st["altitude"]), "elev_low": min(st["altitude"]),
            "upload_id": rec["upload_id"], "upload_id_str": str(rec["upload_id"]),
            "external_id": rec["external_id"], "from_accepted_tag": False, "pr_count": 0,
            "total_photo_count": 0, "has_kudoed": False,
        }
        if detailed:
            out.update({"description": None, "calories": round(sum(st["watts"]) / 1000 * 1.05, 1),
                        "device_name": rec["device_name"], "embed_token": f"e{rec['id']}",
                        "segment_efforts": [], "splits_metric": [], "laps": [], "photos": {"count": 0},
                        "hide_from_home": False})
        return out

    def _readable_activity(self, req: Request, activity_id: str) -> dict:
        user, grant = self.authorize_bearer(req, ("activity:read", "activity:read_all"))
        try:
            rec = self._activity(int(activity_id))
        except ValueError:
            raise ApiError(fault(404, "Record Not Found", "Activity", "id", "invalid"))
        # Another athlete's activity, or an "Only You" one without activity:read_all, is not found.
        if rec["athlete"] != user.id or (rec["private"] and "activity:read_all" not in grant.scopes):
            raise ApiError(fault(404, "Record Not Found", "Activity", "id", "invalid"))
        return rec

    def _get_activity(self, req: Request) -> Response:
        return json_response(200, self.activity_json(self._readable_activity(req, req.params["id"]), detailed=True))

    def _get_streams(self, req: Request) -> Response:
        rec = self._readable_activity(req, req.params["id"])
        keys = [k for k in (req.q("keys") or "").split(",") if k]
        # Strava always adds the series stream (distance unless series_type=time).
        series_type = req.q("series_type") or "distance"
        wanted = [k for k in STREAM_KEYS if k in keys or k == series_type]
        n = rec["seconds"]
        resolution = req.q("resolution")
        idx = list(range(n))
        if resolution in RESOLUTION_POINTS and n > RESOLUTION_POINTS[resolution]:
            m = RESOLUTION_POINTS[resolution]
            idx = sorted({round(i * (n - 1) / (m - 1)) for i in range(m)})
        streams = []
        for k in wanted:
            data = rec["streams"][k]
            streams.append({"type": k, "data": [data[i] for i in idx], "series_type": series_type,
                            "original_size": n, "resolution": resolution or "high"})
        if (req.q("key_by_type") or "").lower() == "true":
            return json_response(200, {s.pop("type"): s for s in streams})
        return json_response(200, streams)

    def _list_activities(self, req: Request) -> Response:
        user, grant = self.authorize_bearer(req, ("activity:read", "activity:read_all"))
        try:
            before = int(req.q("before")) if req.q("before") else None
            after = int(req.q("after")) if req.q("after") else None
            page = max(1, int(req.q("page") or 1))
            per_page = min(200, max(1, int(req.q("per_page") or 30)))
        except ValueError:
            return fault(400, "Bad Request", "Activity", "page", "invalid")
        with self.lock:
            recs = [r for r in self.activities.values()
                    if r["athlete"] == user.id and not r["deleted"]
                    and (not r["private"] or "activity:read_all" in grant.scopes)
                    and (before is None or r["start"] < before) and (after is None or r["start"] > after)]
        # With only `after`, Strava lists oldest first; otherwise newest first.
        recs.sort(key=lambda r: r["start"], reverse=not (after is not None and before is None))
        chunk = recs[(page - 1) * per_page: page * per_page]
        return json_response(200, [self.activity_json(r, detailed=False) for r in chunk])

    # ----------------------------------------------------------------------------------- subscriptions

    def _check_app(self, values: dict) -> Response | None:
        if str(values.get("client_id")) != self.client_id:
            return fault(401, "Authorization Error", "Application", "client_id", "invalid")
        if values.get("client_secret") != self.client_secret:
            return fault(401, "Authorization Error", "Application", "client_secret", "invalid")
        return None

    def _create_subscription(self, req: Request) -> Response:
        form = req.form()
        error = self._check_app(form)
        if error is not None:
            return error
        callback = form.get("callback_url") or ""
        if not callback.startswith(("http://", "https://")):
            return fault(400, "Bad Request", "PushSubscription", "callback url", "invalid")
        with self.lock:
            if self.subscriptions:
                return fault(400, "Bad Request", "PushSubscription", "", "already exists")
        challenge = secrets.token_hex(16)
        url = add_query(callback, [("hub.verify_token", form.get("verify_token") or ""),
                                   ("hub.challenge", challenge), ("hub.mode", "subscribe")])
        try:
            status, _, body = http_request("GET", url, timeout=2.0, verify_tls=bool(self.opt("webhook_verify_tls")))
            echoed = json.loads(body).get("hub.challenge") if status == 200 else None
        except (OSError, ValueError, AttributeError):
            echoed = None
        if echoed != challenge:
            return fault(400, "Bad Request", "PushSubscription", "callback url",
                         "GET to callback URL does not return 200")
        with self.lock:
            sub_id = self._add_subscription(callback, form.get("verify_token"))
        return json_response(201, {"id": sub_id})

    def _add_subscription(self, callback: str, verify_token: str | None) -> int:
        sub_id = int(self.opt("subscription_id")) + self._subs_created
        self._subs_created += 1
        now = iso_z(self.now())
        self.subscriptions[sub_id] = {"id": sub_id, "resource_state": 2, "application_id": int(self.client_id)
                                      if self.client_id.isdigit() else self.client_id,
                                      "callback_url": callback, "created_at": now, "updated_at": now,
                                      "verify_token": verify_token}
        return sub_id

    def preprovision_webhook(self, url: str) -> None:
        self._add_subscription(url, None)

    def _list_subscriptions(self, req: Request) -> Response:
        error = self._check_app(req.form())
        if error is not None:
            return error
        with self.lock:
            return json_response(200, [{k: v for k, v in s.items() if k != "verify_token"}
                                       for s in self.subscriptions.values()])

    def _delete_subscription(self, req: Request) -> Response:
        error = self._check_app(req.form())
        if error is not None:
            return error
        with self.lock:
            if self.subscriptions.pop(int(req.params["id"]) if req.params["id"].isdigit() else None, None) is None:
                return fault(404, "Record Not Found", "PushSubscription", "id", "invalid")
        return Response(204)

    def subscriptions_state(self) -> list:
        return [dict(s) for s in self.subscriptions.values()]

    # ---------------------------------------------------------------------------------------- webhooks

    def webhook_event(self, object_type: str = "activity", object_id: Any = None, aspect_type: str = "create",
                      owner_id: Any = None, updates: dict | None = None, event_time: int | None = None,
                      target: str | None = None, subscription_id: int | None = None) -> list:
        """An event {aspect_type, event_time, object_id, object_type, owner_id, subscription_id,
        updates} (keys sorted, as in the docs' example) to the app's subscription, or to `target`."""
        with self.lock:
            subs = list(self.subscriptions.values())
        targets = [(target, subscription_id or (subs[0]["id"] if subs else int(self.opt("subscription_id"))))] \
            if target else [(s["callback_url"], subscription_id or s["id"]) for s in subs]
        owner = owner_id if owner_id is not None else self.default_user_id
        sends = []
        for dest, sub_id in targets:
            body = compact({"aspect_type": aspect_type,
                            "event_time": int(event_time if event_time is not None else self.now()),
                            "object_id": object_id if object_id is not None else owner, "object_type": object_type,
                            "owner_id": owner, "subscription_id": sub_id, "updates": updates or {}}, sort_keys=True)
            label = f"{object_type}.{aspect_type}"
            sends.append(lambda dest=dest, body=body, label=label: self._post(dest, body, label))
        return sends

    def _post(self, url: str, body: bytes, label: str) -> dict:
        headers = {"User-Agent": "Strava-Webhooks"}
        if self.opt("sign"):
            headers["X-Strava-Signature"] = sign(self.client_secret, body, int(time.time()))
        return self.deliver(url, body, headers, label, success=lambda s: s == 200)

    # ----------------------------------------------------------------------------------------- control

    def _ctl_create_activity(self, req: Request) -> Response:
        b = req.json()
        if "user" not in b:
            return json_response(400, {"error": "user (athlete id) is required"})
        kw = {k: b[k] for k in ("start", "seconds", "hr_base", "type", "name", "private", "device_name",
                                "streams", "notify") if k in b}
        return json_response(201, self.create_activity(b["user"], **kw))

    def _ctl_update_activity(self, req: Request) -> Response:
        return json_response(200, self.update_activity(int(req.params["id"]), **req.json()))

    def _ctl_delete_activity(self, req: Request) -> Response:
        return json_response(200, self.delete_activity(int(req.params["id"]), notify=req.q("notify") != "false"))
