"""Wahoo Cloud API emulator.

Follows cloud-api.wahooligan.com (Registration, Rate Limiting, Authentication, Users, Workouts,
Workout Summaries, Webhooks) and the scope list at developers.wahooligan.com/cloud: authorize at
api.wahooligan.com/oauth/authorize and token at api.wahooligan.com/oauth/token with the client
credentials as form (or query) parameters, PKCE allowed, space-separated scopes; token answers
{access_token, token_type, expires_in (7200), refresh_token, scope, created_at} with rotating refresh
tokens (the previous one is withdrawn once the new pair is used) and RFC 6749 errors;
GET /v1/user; GET /v1/workouts?page=&per_page= (newest start first, default 30 a page, with total),
GET /v1/workouts/{id} and GET /v1/workouts/{id}/workout_summary (404 until the workout has one);
DELETE /v1/permissions withdraws the app's access; workout FIT files on the CDN path
/wahoo-cloud/production/uploads/workout_file/file/{token}/{name} (served without authentication);
rate limits of 200 / 5 min, 1000 / hour and 5000 / day per app (sandbox: 25 / 100 / 250) with
X-RateLimit-Limit and X-RateLimit-Remaining as "day, hour, 5min" and X-RateLimit-Reset in seconds;
the `workout_summary` webhook to the URL set in the portal, for users who granted `offline_data`,
carrying the portal's `webhook_token` in the body (no signature header) and retried while the answer
is not exactly 200.

Numbers in summaries are strings by default (`"power_avg": "94.59"`), as delivered messages show them;
`numbers_as_strings=False` sends them as the documentation's examples do. The FIT files are real device
files from data/ (see data/LICENSES.md).
"""

from __future__ import annotations

import math
import secrets
from pathlib import Path
from typing import Any

from .base import ApiError, Emulator, Request, Response, Route, compact, iso_z, json_response, parse_iso

DATA_DIR = Path(__file__).resolve().parent / "data"

SCOPES = ("email", "user_read", "user_write", "workouts_read", "workouts_write", "plans_read", "plans_write",
          "power_zones_read", "power_zones_write", "routes_read", "routes_write", "offline_data")

FILE_PATH = "/wahoo-cloud/production/uploads/workout_file/file"

# What is known about each fixture (from two independent FIT decoders), so a workout made from it
# carries a summary that agrees with its file.
FIXTURES: dict[str, dict] = {
    "wahoo-elemnt-bolt-no-app-id.fit": {
        "starts": "2017-08-21T08:18:00Z", "seconds": 131, "distance": 956.03, "device": "ELEMNT BOLT 8B1D",
        "power_avg": 128.0, "cadence_avg": 55.0,
    },
}


def iso_ms(t: float) -> str:
    """Wahoo's timestamps: RFC 3339 UTC with milliseconds, 2018-10-23T20:43:50.000Z."""
    return iso_z(t)[:-1] + ".000Z"


class WahooEmulator(Emulator):
    vendor = "wahoo"
    display_name = "Wahoo"
    scope_separator = " "
    scopes_supported = SCOPES
    default_scopes = ("user_read",)
    authorize_path = "/oauth/authorize"
    token_path = "/oauth/token"
    client_auth_methods = ("body",)
    supports_pkce = True
    user_id_type = int
    default_user_id = 60462               # the user of the documented webhook example

    VENDOR_DEFAULTS = {
        "access_ttl_s": 7200,
        "webhook_timeout_s": 10.0,
        "webhook_token": "emulator-webhook-token",   # the token set in the developer portal
        "webhook_enabled": True,
        "rate_limit_5min": 200,            # production app; sandbox: 25 / 100 / 250
        "rate_limit_hour": 1000,
        "rate_limit_day": 5000,
        "numbers_as_strings": True,        # as delivered messages show them
        "list_embeds_summary": True,       # GET /v1/workouts carries each workout's summary
        "file_url_base": None,             # base of the summaries' file URLs; None: this emulator (SSRF tests)
    }

    def __init__(self, *args, **kwargs):
        self.workouts: dict[int, dict] = {}
        self.files: dict[str, dict] = {}
        self.file_downloads: list[dict] = []
        self.portal_webhook_url: str | None = None
        self._next_workout = 56518
        self._next_summary = 8296
        super().__init__(*args, **kwargs)

    def urls(self) -> dict[str, str]:
        return {**super().urls(), "revoke": self.url("/v1/permissions"), "api": self.url("/v1")}

    def new_token(self, kind: str) -> str:
        return secrets.token_hex(32)

    # ------------------------------------------------------------------------------------------ routes

    def register_routes(self) -> None:
        r = self.route
        r("GET", "/v1/user", self._user, api=True)
        r("GET", "/v1/workouts", self._list_workouts, api=True)
        r("GET", "/v1/workouts/{workout_id}", self._workout, api=True)
        r("GET", "/v1/workouts/{workout_id}/workout_summary", self._summary, api=True)
        r("DELETE", "/v1/permissions", self._delete_permissions, api=True)
        r("GET", FILE_PATH + "/{token}/{name}", self._file)
        r("POST", "/_emulator/workouts", self._ctl_workouts, control=True)
        r("POST", "/_emulator/workouts/{workout_id}/update", self._ctl_update, control=True)

    # ----------------------------------------------------------------------------------- answer shapes

    def token_body(self, grant, access, refresh, exchange) -> dict:
        body = {"access_token": access.token, "token_type": "Bearer",
                "expires_in": int(round(access.expires_at - self.now())), "scope": " ".join(grant.scopes),
                "created_at": int(self.now())}
        if refresh is not None:
            body["refresh_token"] = refresh.token
        return body

    def too_many_requests(self, req: Request, route: Route | None) -> Response:
        usage = self._windows(count=False)
        return json_response(429, {"error": "Rate limit exceeded"},
                             self._rate_headers(usage) + self.retry_after_headers())

    # --------------------------------------------------------------------------------------- rate limits

    WINDOWS = (86400, 3600, 300)           # the headers' order: day, hour, 5 min

    def _limits(self) -> tuple[int, int, int]:
        return int(self.opt("rate_limit_day")), int(self.opt("rate_limit_hour")), int(self.opt("rate_limit_5min"))

    def _windows(self, count: bool) -> list[tuple[int, float]]:
        with self.lock:
            return self.rate.hit("app", self.WINDOWS, self.now(), count=count)

    def _rate_headers(self, usage: list[tuple[int, float]]) -> list[tuple[str, str]]:
        limits = self._limits()
        remaining = [max(0, limit - n) for (n, _), limit in zip(usage, limits)]
        spent = [math.ceil(left) for (n, left), limit in zip(usage, limits) if n >= limit]
        return [("X-RateLimit-Limit", ", ".join(str(x) for x in limits)),
                ("X-RateLimit-Remaining", ", ".join(str(x) for x in remaining)),
                ("X-RateLimit-Reset", str(max(spent, default=0)))]

    def check_rate_limit(self, req: Request, route: Route) -> Response | None:
        usage = self._windows(count=True)
        if any(n > limit for (n, _), limit in zip(usage, self._limits())):
            return self.too_many_requests(req, route)
        return None

    def rate_limit_headers(self, req: Request, route: Route) -> list[tuple[str, str]]:
        return self._rate_headers(self._windows(count=False))

    # ------------------------------------------------------------------------------------------- shapes

    def _num(self, value: float | int | None) -> Any:
        if value is None:
            return None
        return str(round(float(value), 2)) if self.opt("numbers_as_strings") else value

    def _workout_json(self, w: dict, embed: bool) -> dict:
        out = {"id": w["id"], "starts": iso_ms(w["starts"]), "minutes": w["minutes"], "name": w["name"],
               "plan_id": None, "workout_token": w["workout_token"], "workout_type_id": w["workout_type_id"],
               "created_at": iso_ms(w["created_at"]), "updated_at": iso_ms(w["updated_at"])}
        if embed:
            out["workout_summary"] = self._summary_json(w) if w["summary"] is not None else None
        return out

    def _file_url(self, f: dict) -> str:
        base = self.opt("file_url_base") or self.base_url
        return f"{base}{FILE_PATH}/{f['token']}/{f['name']}"

    def _summary_json(self, w: dict) -> dict:
        s = w["summary"]
        n = self._num
        out = {"id": s["id"], "ascent_accum": n(s["ascent"]), "cadence_avg": n(s["cadence_avg"]),
               "calories_accum": n(s["calories"]), "distance_accum": n(s["distance"]),
               "duration_active_accum": n(s["active"]), "duration_paused_accum": n(s["total"] - s["active"]),
               "duration_total_accum": n(s["total"]), "heart_rate_avg": n(s["hr_avg"]),
               "power_bike_np_last": n(s["np"]), "power_bike_tss_last": n(s["tss"]), "power_avg": n(s["power_avg"]),
               "speed_avg": n(s["speed_avg"]), "work_accum": n(s["work"]),
               "started_at": iso_ms(w["starts"]), "time_zone": s["time_zone"], "fitness_app_id": 1,
               "manual": s["manual"], "edited": s["edited"],
               "created_at": iso_ms(s["created_at"]), "updated_at": iso_ms(s["updated_at"]),
               "file": {"url": self._file_url(self.files[w["file"]])} if w["file"] else None}
        return out

    # ------------------------------------------------------------------------------------------- data

    def _owned(self, req: Request, user) -> dict:
        try:
            wid = int(req.params["workout_id"])
        except ValueError:
            raise ApiError(json_response(404, {"error": "not found"}))
        with self.lock:
            w = self.workouts.get(wid)
        if w is None or w["user"] != user.id:
            raise ApiError(json_response(404, {"error": "not found"}))
        return w

    def _user(self, req: Request) -> Response:
        user, grant = self.authorize_bearer(req, ("user_read",))
        out = {"id": user.id, "height": "1.8", "weight": "75.0", "first": user.name.split()[0],
               "last": str(user.id), "birth": "1985-04-02", "gender": 1,
               "created_at": "2018-10-23T15:38:23.000Z", "updated_at": "2018-10-24T20:46:40.000Z"}
        if "email" in grant.scopes:
            out["email"] = f"{user.id}@example.com"
        return json_response(200, out)

    def _list_workouts(self, req: Request) -> Response:
        user, _ = self.authorize_bearer(req, ("workouts_read",))
        try:
            page = max(1, int(req.q("page") or 1))
            per_page = max(1, int(req.q("per_page") or 30))
        except ValueError:
            return json_response(400, {"error": "page and per_page must be integers"})
        with self.lock:
            mine = sorted((w for w in self.workouts.values() if w["user"] == user.id),
                          key=lambda w: (w["starts"], w["id"]), reverse=True)
            embed = bool(self.opt("list_embeds_summary"))
            items = [self._workout_json(w, embed) for w in mine[(page - 1) * per_page:page * per_page]]
        return json_response(200, {"workouts": items, "total": len(mine), "page": page, "per_page": per_page,
                                   "order": "descending", "sort": "starts"})

    def _workout(self, req: Request) -> Response:
        user, _ = self.authorize_bearer(req, ("workouts_read",))
        w = self._owned(req, user)
        with self.lock:
            return json_response(200, self._workout_json(w, True))

    def _summary(self, req: Request) -> Response:
        user, _ = self.authorize_bearer(req, ("workouts_read",))
        w = self._owned(req, user)
        with self.lock:
            if w["summary"] is None:
                return json_response(404, {"error": "not found"})
            return json_response(200, self._summary_json(w))

    def _delete_permissions(self, req: Request) -> Response:
        _, grant = self.authorize_bearer(req)
        with self.lock:
            if not grant.revoked:
                self._revoke_grant(grant, "deauthorize")
        return json_response(200, {})

    def _file(self, req: Request) -> Response:
        """The CDN: no authentication, the file's token in the path is the capability."""
        with self.lock:
            f = self.files.get(req.params["token"])
            self.file_downloads.append({"path": req.path, "found": f is not None and f["name"] == req.params["name"],
                                        "authorization": req.headers.get("Authorization") is not None})
        if f is None or f["name"] != req.params["name"]:
            return Response(403, b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
                                 b'<Message>Access Denied</Message></Error>', [("Content-Type", "application/xml")])
        return Response(200, f["bytes"], [("Content-Type", "application/octet-stream")])

    def create_workout(self, user: Any, fixture: str | None = "wahoo-elemnt-bolt-no-app-id.fit",
                       start: float | None = None, seconds: int | None = None, name: str = "Cycling",
                       workout_type_id: int = 0, summary: bool = True, manual: bool = False,
                       distance: float | None = None, calories: float | None = None,
                       data: bytes | None = None, notify: bool = False) -> dict:
        """A workout with its summary and, unless `fixture` is None (a workout entered by hand), its FIT
        file from data/ (or `data`). Defaults follow the fixture (start, duration, distance). Returns
        the webhook's `workout_summary` object (the workout inside it), + "webhook" with `notify`;
        without a summary, {"workout": …} (and nothing to announce)."""
        owner = self.get_user(user)
        facts = FIXTURES.get(fixture or "", {})
        start = parse_iso(facts["starts"]) if start is None and facts else (start or self.now() - 7200)
        seconds = int(seconds or facts.get("seconds", 1800))
        now = self.now()
        with self.lock:
            self._next_workout += 1
            wid = self._next_workout
            token = None
            if fixture is not None or data is not None:
                token = secrets.token_urlsafe(16)
                base = Path(fixture).stem if fixture else "workout"
                name_on_cdn = f"{base}-{wid}.fit"
                raw = data if data is not None else (DATA_DIR / fixture).read_bytes()
                self.files[token] = {"token": token, "name": name_on_cdn, "bytes": raw}
            w = {"id": wid, "user": owner.id, "starts": float(start), "minutes": int(round(seconds / 60)),
                 "name": name, "workout_token": f"{facts.get('device', 'ELEMNT BOLT A6D5')}:{wid % 1000}",
                 "workout_type_id": workout_type_id, "created_at": now, "updated_at": now, "file": token,
                 "summary": None}
            if summary:
                self._next_summary += 1
                dist = distance if distance is not None else facts.get("distance", 0.0 if manual else 15000.0)
                power = facts.get("power_avg", 0.0)
                w["summary"] = {"id": self._next_summary, "ascent": 12.0, "cadence_avg": facts.get("cadence_avg", 0.0),
                                "calories": calories if calories is not None else round(power * seconds / 1000, 1),
                                "distance": dist, "active": float(seconds), "total": float(seconds),
                                "hr_avg": 0.0, "np": power or None, "tss": None, "power_avg": power,
                                "speed_avg": round(dist / seconds, 2) if seconds else 0.0,
                                "work": round(power * seconds, 1), "time_zone": "Europe/Berlin", "manual": manual,
                                "edited": False, "created_at": now, "updated_at": now}
            self.workouts[wid] = w
            out = self._message_summary(w) if summary else {"workout": self._workout_json(w, True)}
        if notify and summary:
            out["webhook"] = self.notify(user=owner.id, workout_id=wid)
        return out

    def update_workout(self, workout_id: int, name: str | None = None, fixture: str | None = None,
                       remove_file: bool = False, notify: bool = False) -> dict:
        """Edits a workout (a new summary revision: updated_at moves on), optionally replacing or removing
        its file. Returns the webhook's `workout_summary` object (+ "webhook" with `notify`)."""
        with self.lock:
            w = self.workouts.get(int(workout_id))
            if w is None or w["summary"] is None:
                raise ApiError(json_response(404, {"error": f"no workout {workout_id} with a summary"}))
            now = max(self.now(), w["summary"]["updated_at"] + 1)
            if name is not None:
                w["name"] = name
            if fixture is not None:
                token = secrets.token_urlsafe(16)
                self.files[token] = {"token": token, "name": f"{Path(fixture).stem}-{w['id']}.fit",
                                     "bytes": (DATA_DIR / fixture).read_bytes()}
                w["file"] = token
            if remove_file:
                w["file"] = None
            w["updated_at"] = now
            w["summary"]["updated_at"] = now
            w["summary"]["edited"] = True
            out = self._message_summary(w)
        if notify:
            out["webhook"] = self.notify(user=w["user"], workout_id=w["id"])
        return out

    def _message_summary(self, w: dict) -> dict:
        """The webhook's workout_summary: the summary with its workout inside. Caller holds the lock."""
        return {**self._summary_json(w), "workout": self._workout_json(w, False)}

    # ---------------------------------------------------------------------------------------- webhooks

    def preprovision_webhook(self, url: str) -> None:
        self.portal_webhook_url = url

    def subscriptions_state(self) -> list:
        if not self.portal_webhook_url:
            return []
        return [{"webhook_url": self.portal_webhook_url, "enabled": bool(self.opt("webhook_enabled"))}]

    def _offline(self, user_id: Any) -> bool:
        """Whether the user has a live grant with offline_data (Wahoo's condition for webhooks)."""
        return any(not g.revoked and "offline_data" in g.scopes for g in self.user_grants.get(user_id, ()))

    def webhook_event(self, user: Any = None, workout_id: int | None = None, webhook_token: str | None = None,
                      event_type: str = "workout_summary", target: str | None = None) -> list:
        """{event_type, webhook_token, user: {id}, workout_summary: {…, file, workout}} for the workout's
        current summary, to the portal's webhook URL (only for users who granted offline_data) or to
        `target`. `webhook_token` overrides the portal's (forgery tests)."""
        with self.lock:
            w = self.workouts.get(int(workout_id)) if workout_id is not None else None
            if w is None or w["summary"] is None:
                raise ApiError(json_response(404, {"error": f"no workout {workout_id} with a summary"}))
            uid = self.user_key(user) if user is not None else w["user"]
            dest = target or (self.portal_webhook_url if self.opt("webhook_enabled") and self._offline(uid) else None)
            if dest is None:
                return []
            body = compact({"event_type": event_type,
                            "webhook_token": webhook_token if webhook_token is not None else self.opt("webhook_token"),
                            "user": {"id": uid}, "workout_summary": self._message_summary(w)})
        return [lambda: self.deliver(dest, body, {}, event_type, success=lambda s: s == 200)]

    # ------------------------------------------------------------------------------------------ control

    def state(self, brief: bool = False, user: Any = None) -> dict:
        out = super().state(brief, user)
        with self.lock:
            out["file_downloads"] = list(self.file_downloads)
            out["workouts"] = len(self.workouts)
        return out

    def _ctl_workouts(self, req: Request) -> Response:
        b = req.json()
        if "user" not in b:
            return json_response(400, {"error": "user is required"})
        kw = {k: b[k] for k in ("fixture", "start", "seconds", "name", "workout_type_id", "summary", "manual",
                                "distance", "calories", "notify") if k in b}
        return json_response(201, self.create_workout(b["user"], **kw))

    def _ctl_update(self, req: Request) -> Response:
        b = req.json()
        kw = {k: b[k] for k in ("name", "fixture", "remove_file", "notify") if k in b}
        return json_response(200, self.update_workout(int(req.params["workout_id"]), **kw))
