"""Oura API v2 emulator.

Follows cloud.ouraring.com/v2/docs: authorize at cloud.ouraring.com/oauth/authorize and token at
api.ouraring.com/oauth/token (client credentials in the body, space-separated scopes), refresh tokens
that are single-use (a new one with every refresh), revocation at /oauth/revoke?access_token=;
/v2/usercollection/personal_info (the user id), heartrate (start_datetime / end_datetime, rows
{bpm, source, timestamp}, `next_token` paging), sleep and daily_activity (start_date / end_date, and
by document id), 429 beyond 5000 requests in 5 minutes; webhook subscriptions under
/v2/webhook/subscription (list, create, get, update, delete, renew) authenticated with the
x-client-id / x-client-secret headers: creating one sends GET callback_url?verification_token=..&
challenge=.. that must echo {"challenge"}, subscriptions expire at `expiration_time` unless renewed,
and notifications {event_type, data_type, object_id, event_time, user_id} carry x-oura-timestamp and
x-oura-signature = upper-case hex HMAC-SHA256(client_secret, timestamp + body) (vector B3).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import secrets
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from typing import Any

from .base import (ApiError, Emulator, Request, Response, Route, add_query, compact, http_request, iso_offset,
                   json_response, parse_iso, seeded_rng)

SCOPES = ("email", "personal", "daily", "heartrate", "workout", "tag", "session", "spo2", "ring_configuration",
          "stress", "heart_health")
# collection -> the scope reading it needs
COLLECTIONS = {"heartrate": "heartrate", "sleep": "daily", "daily_sleep": "daily", "daily_activity": "daily",
               "daily_readiness": "daily", "sleep_time": "daily", "rest_mode_period": "daily",
               "daily_spo2": "spo2", "daily_stress": "stress", "daily_resilience": "stress",
               "daily_cardiovascular_age": "heart_health", "vO2_max": "heart_health", "workout": "workout",
               "session": "session", "tag": "tag", "enhanced_tag": "tag", "ring_configuration": "ring_configuration"}
WEBHOOK_DATA_TYPES = ("tag", "enhanced_tag", "workout", "session", "sleep", "daily_sleep", "daily_readiness",
                      "daily_activity", "daily_spo2", "sleep_time", "rest_mode_period", "ring_configuration",
                      "daily_stress", "daily_resilience", "daily_cardiovascular_age", "vo2_max", "heartrate")
EVENT_TYPES = ("create", "update", "delete")


def sign(client_secret: str, timestamp: str, body: bytes) -> str:
    """The x-oura-signature value for `body` sent with x-oura-timestamp `timestamp` (vector B3)."""
    return hmac.new(client_secret.encode(), timestamp.encode() + body, hashlib.sha256).hexdigest().upper()


def detail(status: int, text: str, headers=()) -> Response:
    return json_response(status, {"detail": text}, headers)


def _doc_id(rng) -> str:
    h = "%032x" % rng.getrandbits(128)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class OuraEmulator(Emulator):
    vendor = "oura"
    display_name = "Oura"
    scope_separator = " "
    scopes_supported = SCOPES
    default_scopes = ("personal", "daily")
    authorize_path = "/oauth/authorize"
    token_path = "/oauth/token"
    client_auth_methods = ("body", "basic")
    user_id_type = str
    default_user_id = "user-123"            # the user of the webhook example (vector B3)

    VENDOR_DEFAULTS = {
        "access_ttl_s": 86400,
        "webhook_timeout_s": 10.0,
        "subscription_ttl_s": 30 * 86400,
        "rate_limit_5min": 5000,
        "page_size": 1000,                  # documents per page before next_token
    }

    def __init__(self, *args, **kwargs):
        self.heartrate: dict[str, list[dict]] = {}
        self.documents: dict[str, dict[str, dict]] = {"sleep": {}, "daily_activity": {}}
        self.subscriptions: dict[str, dict] = {}
        super().__init__(*args, **kwargs)

    def urls(self) -> dict[str, str]:
        return {**super().urls(), "revoke": self.url("/oauth/revoke"), "api": self.url("/v2")}

    def new_token(self, kind: str) -> str:
        return secrets.token_urlsafe(32)

    # ------------------------------------------------------------------------------------------ routes

    def register_routes(self) -> None:
        r = self.route
        r("POST", "/oauth/revoke", self._revoke)
        r("GET", "/v2/usercollection/personal_info", self._personal_info, api=True)
        r("GET", "/v2/usercollection/heartrate", self._heartrate, api=True)
        r("GET", "/v2/usercollection/{collection}", self._collection, api=True)
        r("GET", "/v2/usercollection/{collection}/{document_id}", self._document, api=True)
        r("GET", "/v2/webhook/subscription", self._list_subs)
        r("POST", "/v2/webhook/subscription", self._create_sub)
        r("PUT", "/v2/webhook/subscription/renew/{sub_id}", self._renew_sub)
        r("GET", "/v2/webhook/subscription/{sub_id}", self._get_sub)
        r("PUT", "/v2/webhook/subscription/{sub_id}", self._update_sub)
        r("DELETE", "/v2/webhook/subscription/{sub_id}", self._delete_sub)
        r("POST", "/_emulator/heartrate", self._ctl_heartrate, control=True)
        r("POST", "/_emulator/sleep", self._ctl_sleep, control=True)
        r("POST", "/_emulator/daily_activity", self._ctl_daily_activity, control=True)

    # ----------------------------------------------------------------------------------- answer shapes

    def token_body(self, grant, access, refresh, exchange) -> dict:
        return {"access_token": access.token, "refresh_token": refresh.token if refresh else None,
                "expires_in": int(round(access.expires_at - self.now())), "token_type": "bearer"}

    def unauthorized(self, req, reason) -> Response:
        return detail(401, f"Unauthorized: {reason}", [("WWW-Authenticate", "Bearer")])

    def insufficient_scope(self, req, needed) -> Response:
        # Oura answers a token without the collection's scope as unauthorized.
        return detail(401, f"Unauthorized: the token lacks the {' or '.join(needed)} scope")

    def not_found(self, req) -> Response:
        return detail(404, "Not Found")

    def server_error(self, req, status) -> Response:
        return detail(status, "Internal Server Error" if status == 500 else "Service Unavailable")

    def too_many_requests(self, req, route) -> Response:
        return detail(429, "Too Many Requests", self.retry_after_headers())

    def check_rate_limit(self, req: Request, route: Route) -> Response | None:
        with self.lock:
            (usage, _), = self.rate.hit("app", (300,), self.now())
        return self.too_many_requests(req, route) if usage > int(self.opt("rate_limit_5min")) else None

    def _revoke(self, req: Request) -> Response:
        token = req.q("access_token") or req.form().get("access_token") or ""
        if self.revoke_token(token, via="revoke") is None:
            return detail(400, "Invalid token")
        return json_response(200, {})

    # ----------------------------------------------------------------------------------------- paging

    def _page(self, items: list, req: Request, fingerprint: str) -> dict:
        offset = 0
        token = req.q("next_token")
        if token:
            try:
                tok = json.loads(base64.urlsafe_b64decode(token.encode()))
                if tok["f"] != fingerprint:
                    raise ValueError
                offset = int(tok["o"])
            except (ValueError, KeyError, TypeError):
                raise ApiError(detail(400, "Invalid next_token"))
        size = int(self.opt("page_size"))
        nxt = None
        if offset + size < len(items):
            nxt = base64.urlsafe_b64encode(json.dumps({"o": offset + size, "f": fingerprint}).encode()).decode()
        return {"data": items[offset:offset + size], "next_token": nxt}

    def _day_range(self, req: Request) -> tuple[str, str]:
        try:
            end = date.fromisoformat(req.q("end_date")) if req.q("end_date") else \
                datetime.fromtimestamp(self.now(), tz=timezone.utc).date()
            start = date.fromisoformat(req.q("start_date")) if req.q("start_date") else end - timedelta(days=1)
        except ValueError:
            raise ApiError(detail(400, "Dates must be YYYY-MM-DD"))
        if start > end:
            raise ApiError(detail(400, "Start date is greater than end date"))
        return start.isoformat(), end.isoformat()

    # ------------------------------------------------------------------------------------------- data

    def _personal_info(self, req: Request) -> Response:
        user, grant = self.authorize_bearer(req)
        rng = seeded_rng(self.seed, "oura", "person", user.id)
        out: dict = {"id": str(user.id)}
        if "personal" in grant.scopes:
            out.update(age=rng.randint(25, 60), weight=round(rng.uniform(55, 95), 1),
                       height=round(rng.uniform(1.55, 1.95), 2), biological_sex=rng.choice(["male", "female"]))
        if "email" in grant.scopes:
            out["email"] = f"{user.id}@example.com"
        return json_response(200, out)

    def create_heartrate(self, user: Any, start: float | None = None, seconds: int = 3600, interval_s: int = 300,
                         base: int = 60, source: str = "awake", values: list | None = None) -> dict:
        """Heart rate rows every `interval_s` from `start` (or exactly `values`). Returns {"data": rows}."""
        owner = self.get_user(user)
        start = int(self.now() - seconds - 600 if start is None else start)
        count = len(values) if values is not None else max(1, int(seconds) // int(interval_s))
        rng = seeded_rng(self.seed, "oura", "hr", owner.id, start)
        rows = []
        for i in range(count):
            t = start + i * int(interval_s)
            bpm = values[i] if values is not None else int(round(base + 6 * math.sin(t / 1800) + rng.gauss(0, 2)))
            rows.append({"t": t, "bpm": bpm, "source": source})
        with self.lock:
            series = self.heartrate.setdefault(str(owner.id), [])
            series.extend(rows)
            series.sort(key=lambda r: r["t"])
        return {"data": [self._hr_row(r) for r in rows]}

    @staticmethod
    def _hr_row(r: dict) -> dict:
        return {"bpm": r["bpm"], "source": r["source"], "timestamp": iso_offset(r["t"], 0)}

    def _heartrate(self, req: Request) -> Response:
        user, _ = self.authorize_bearer(req, ("heartrate",))
        try:
            end = parse_iso(req.q("end_datetime")) if req.q("end_datetime") else self.now()
            start = parse_iso(req.q("start_datetime")) if req.q("start_datetime") else end - 86400
        except ValueError:
            return detail(400, "start_datetime and end_datetime must be ISO 8601")
        if start >= end:
            return detail(400, "Start time is greater than end time")
        if end - start > 30 * 86400:
            return detail(400, "The time range may not exceed 30 days")
        with self.lock:
            rows = [self._hr_row(r) for r in self.heartrate.get(str(user.id), ()) if start <= r["t"] < end]
        return json_response(200, self._page(rows, req, f"hr|{user.id}|{start}|{end}"))

    def _collection(self, req: Request) -> Response:
        name = req.params["collection"]
        if name not in COLLECTIONS:
            return self.not_found(req)
        user, _ = self.authorize_bearer(req, (COLLECTIONS[name],))
        first, last = self._day_range(req)
        with self.lock:
            docs = sorted((d for d in self.documents.get(name, {}).values()
                           if d["_user"] == str(user.id) and first <= d["day"] <= last),
                          key=lambda d: (d["day"], d["id"]))
        public = [{k: v for k, v in d.items() if not k.startswith("_")} for d in docs]
        return json_response(200, self._page(public, req, f"{name}|{user.id}|{first}|{last}"))

    def _document(self, req: Request) -> Response:
        name = req.params["collection"]
        if name not in COLLECTIONS:
            return self.not_found(req)
        user, _ = self.authorize_bearer(req, (COLLECTIONS[name],))
        with self.lock:
            doc = self.documents.get(name, {}).get(req.params["document_id"])
        if doc is None or doc["_user"] != str(user.id):
            return detail(404, "Document not found")
        return json_response(200, {k: v for k, v in doc.items() if not k.startswith("_")})

    def create_sleep(self, user: Any, bedtime_start: float | None = None, seconds: int = 8 * 3600,
                     hr_base: int = 54, hrv_base: int = 45, notify: bool = False) -> dict:
        """A long_sleep period with 5-minute heart_rate / hrv series (the first item null, as a ring
        settling in), sleep_phase_5_min (1 deep, 2 light, 3 REM, 4 awake) and movement_30_sec.
        Returns the document as GET /v2/usercollection/sleep/{id} shows it (+ "webhook" with `notify`)."""
        owner = self.get_user(user)
        off = owner.utc_offset_s
        start = int(self.now() - seconds - 3600 if bedtime_start is None else bedtime_start)
        rng = seeded_rng(self.seed, "oura", "sleep", owner.id, start)
        n = max(2, int(seconds) // 300)
        phases = "".join("4" if i < 2 or i == n - 1 else "2132"[(i // 6) % 4] for i in range(n))
        hr = [None] + [int(round(hr_base + 6 * math.cos(2 * math.pi * i / n) + rng.gauss(0, 1))) for i in range(1, n)]
        hrv = [None] + [int(round(hrv_base + 10 * math.sin(2 * math.pi * i / n) + rng.gauss(0, 3))) for i in range(1, n)]
        known_hr = [h for h in hr if h is not None]
        known_hrv = [h for h in hrv if h is not None]
        durations = {p: phases.count(p) * 300 for p in "1234"}
        total_sleep = durations["1"] + durations["2"] + durations["3"]
        end = start + n * 300
        doc = {"id": _doc_id(rng), "average_breath": round(14 + rng.gauss(0, 0.5), 3),
               "average_heart_rate": round(sum(known_hr) / len(known_hr), 3),
               "average_hrv": int(round(sum(known_hrv) / len(known_hrv))), "awake_time": durations["4"],
               "bedtime_end": iso_offset(end, off), "bedtime_start": iso_offset(start, off),
               "day": datetime.fromtimestamp(end + off, tz=timezone.utc).date().isoformat(),
               "deep_sleep_duration": durations["1"], "efficiency": int(round(100 * total_sleep / (n * 300))),
               "heart_rate": {"interval": 300.0, "items": hr, "timestamp": iso_offset(start, off)},
               "hrv": {"interval": 300.0, "items": hrv, "timestamp": iso_offset(start, off)},
               "latency": 600, "light_sleep_duration": durations["2"], "low_battery_alert": False,
               "lowest_heart_rate": min(known_hr),
               "movement_30_sec": "".join(rng.choice("1112") for _ in range(n * 10)), "period": 0,
               "readiness": None, "readiness_score_delta": None, "rem_sleep_duration": durations["3"],
               "restless_periods": rng.randint(50, 300), "sleep_phase_5_min": phases, "sleep_score_delta": None,
               "sleep_algorithm_version": "v2", "time_in_bed": n * 300, "total_sleep_duration": total_sleep,
               "type": "long_sleep", "_user": str(owner.id)}
        with self.lock:
            self.documents["sleep"][doc["id"]] = doc
        out = {k: v for k, v in doc.items() if not k.startswith("_")}
        if notify:
            out["webhook"] = self.notify(event_type="create", data_type="sleep", object_id=doc["id"], user_id=owner.id)
        return out

    def create_daily_activity(self, user: Any, day: str | None = None, steps: int | None = None,
                              notify: bool = False) -> dict:
        """A daily_activity document (Oura's day runs from 04:00 local) with a 1-minute MET series
        and class_5_min. Returns it as GET /v2/usercollection/daily_activity/{id} shows it."""
        owner = self.get_user(user)
        off = owner.utc_offset_s
        day = day or datetime.fromtimestamp(self.now() + off, tz=timezone.utc).date().isoformat()
        rng = seeded_rng(self.seed, "oura", "activity", owner.id, day)
        steps = int(steps if steps is not None else rng.randint(4000, 14000))
        day_start = datetime.fromisoformat(day).replace(hour=4, tzinfo=timezone.utc).timestamp() - off
        met = [round(max(0.9, 1.2 + 2.5 * max(0.0, math.sin(2 * math.pi * (i - 180) / 1440)) + rng.gauss(0, 0.2)), 1)
               for i in range(1440)]
        classes = "".join(str(min(5, max(0, int(met[i * 5] // 1)))) for i in range(288))
        active = int(steps * 0.04)
        doc = {"id": _doc_id(rng), "class_5_min": classes, "score": rng.randint(60, 95), "active_calories": active,
               "average_met_minutes": round(sum(met) / len(met), 3),
               "contributors": {"meet_daily_targets": 60, "move_every_hour": 95, "recovery_time": 100,
                                "stay_active": 80, "training_frequency": 71, "training_volume": 98},
               "equivalent_walking_distance": int(steps * 0.75),
               "high_activity_met_minutes": sum(1 for m in met if m >= 6),
               "high_activity_time": 60 * sum(1 for m in met if m >= 6), "inactivity_alerts": 0,
               "low_activity_met_minutes": sum(1 for m in met if 1.5 <= m < 3),
               "low_activity_time": 60 * sum(1 for m in met if 1.5 <= m < 3),
               "medium_activity_met_minutes": sum(1 for m in met if 3 <= m < 6),
               "medium_activity_time": 60 * sum(1 for m in met if 3 <= m < 6),
               "met": {"interval": 60.0, "items": met, "timestamp": iso_offset(day_start, off)},
               "meters_to_target": 2000, "non_wear_time": 0, "resting_time": 28800,
               "sedentary_met_minutes": sum(1 for m in met if m < 1.5),
               "sedentary_time": 60 * sum(1 for m in met if m < 1.5), "steps": steps, "target_calories": 500,
               "target_meters": 9000, "total_calories": 1800 + active, "day": day,
               "timestamp": iso_offset(day_start, off), "_user": str(owner.id)}
        with self.lock:
            self.documents["daily_activity"][doc["id"]] = doc
        out = {k: v for k, v in doc.items() if not k.startswith("_")}
        if notify:
            out["webhook"] = self.notify(event_type="create", data_type="daily_activity", object_id=doc["id"],
                                         user_id=owner.id)
        return out

    # ----------------------------------------------------------------------------------- subscriptions

    def _client_auth(self, req: Request) -> None:
        cid, secret = req.headers.get("x-client-id"), req.headers.get("x-client-secret") or ""
        if cid != self.client_id or not secrets.compare_digest(secret, self.client_secret):
            raise ApiError(detail(401, "Invalid client credentials"))

    def _sub_json(self, sub: dict) -> dict:
        return {"id": sub["id"], "callback_url": sub["callback_url"], "event_type": sub["event_type"],
                "data_type": sub["data_type"], "expiration_time": iso_offset(sub["expires_at"], 0)}

    def _sub(self, req: Request) -> dict:
        self._client_auth(req)
        with self.lock:
            sub = self.subscriptions.get(req.params["sub_id"])
        if sub is None:
            raise ApiError(detail(404, "Subscription not found"))
        return sub

    def _validated_body(self, req: Request) -> dict:
        b = req.json()
        if not str(b.get("callback_url") or "").startswith(("http://", "https://")) \
                or b.get("event_type") not in EVENT_TYPES or b.get("data_type") not in WEBHOOK_DATA_TYPES \
                or not b.get("verification_token"):
            raise ApiError(detail(422, "callback_url, verification_token, event_type (create|update|delete) and a "
                                       "known data_type are required"))
        return b

    def _verify_callback(self, url: str, token: str) -> bool:
        challenge = secrets.token_urlsafe(16)
        try:
            status, _, body = http_request("GET", add_query(url, [("verification_token", token),
                                                                  ("challenge", challenge)]),
                                           timeout=float(self.opt("webhook_timeout_s")),
                                           verify_tls=bool(self.opt("webhook_verify_tls")))
            return status == 200 and json.loads(body).get("challenge") == challenge
        except (OSError, ValueError, AttributeError):
            return False

    def _list_subs(self, req: Request) -> Response:
        self._client_auth(req)
        with self.lock:
            return json_response(200, [self._sub_json(s) for s in self.subscriptions.values()])

    def _create_sub(self, req: Request) -> Response:
        self._client_auth(req)
        b = self._validated_body(req)
        with self.lock:
            if any(s["data_type"] == b["data_type"] and s["event_type"] == b["event_type"]
                   and s["callback_url"] == b["callback_url"] for s in self.subscriptions.values()):
                return detail(409, "Subscription already exists")
        if not self._verify_callback(b["callback_url"], b["verification_token"]):
            return detail(400, "Callback URL verification failed: the challenge was not echoed")
        with self.lock:
            sub = self._add_sub(b["callback_url"], b["event_type"], b["data_type"], b["verification_token"])
            return json_response(201, self._sub_json(sub))

    def _add_sub(self, callback: str, event_type: str, data_type: str, token: str | None) -> dict:
        sub = {"id": str(uuid.uuid4()), "callback_url": callback, "event_type": event_type,
               "data_type": data_type, "verification_token": token,
               "expires_at": self.now() + float(self.opt("subscription_ttl_s"))}
        self.subscriptions[sub["id"]] = sub
        return sub

    def preprovision_webhook(self, url: str) -> None:
        for data_type in WEBHOOK_DATA_TYPES:
            for event_type in EVENT_TYPES:
                self._add_sub(url, event_type, data_type, None)

    def _get_sub(self, req: Request) -> Response:
        return json_response(200, self._sub_json(self._sub(req)))

    def _update_sub(self, req: Request) -> Response:
        sub = self._sub(req)
        b = self._validated_body(req)
        if not self._verify_callback(b["callback_url"], b["verification_token"]):
            return detail(400, "Callback URL verification failed: the challenge was not echoed")
        with self.lock:
            sub.update(callback_url=b["callback_url"], event_type=b["event_type"], data_type=b["data_type"],
                       verification_token=b["verification_token"])
            return json_response(200, self._sub_json(sub))

    def _renew_sub(self, req: Request) -> Response:
        sub = self._sub(req)
        with self.lock:
            sub["expires_at"] = self.now() + float(self.opt("subscription_ttl_s"))
            return json_response(200, self._sub_json(sub))

    def _delete_sub(self, req: Request) -> Response:
        sub = self._sub(req)
        with self.lock:
            self.subscriptions.pop(sub["id"], None)
        return Response(204)

    def subscriptions_state(self) -> list:
        now = self.now()
        return [{**self._sub_json(s), "expired": s["expires_at"] <= now} for s in self.subscriptions.values()]

    # ---------------------------------------------------------------------------------------- webhooks

    def webhook_event(self, event_type: str = "create", data_type: str = "sleep", object_id: str | None = None,
                      user_id: Any = None, event_time: str | None = None, target: str | None = None) -> list:
        """{event_type, data_type, object_id, event_time, user_id} to every unexpired subscription for
        (data_type, event_type), or to `target`."""
        now = self.now()
        with self.lock:
            dests = [target] if target else [s["callback_url"] for s in self.subscriptions.values()
                                             if s["data_type"] == data_type and s["event_type"] == event_type
                                             and s["expires_at"] > now]
        body = compact({"event_type": event_type, "data_type": data_type, "object_id": object_id or "",
                        "event_time": event_time or iso_offset(now, 0),
                        "user_id": str(user_id if user_id is not None else self.default_user_id)})
        return [lambda dest=dest: self._post(dest, body, f"{data_type}.{event_type}") for dest in dict.fromkeys(dests)]

    def _post(self, url: str, body: bytes, label: str) -> dict:
        ts = str(int(time.time()))
        return self.deliver(url, body, {"x-oura-timestamp": ts, "x-oura-signature": sign(self.client_secret, ts, body)},
                            label, success=lambda s: 200 <= s < 300)

    # ----------------------------------------------------------------------------------------- control

    def _ctl_heartrate(self, req: Request) -> Response:
        b = req.json()
        if "user" not in b:
            return json_response(400, {"error": "user is required"})
        kw = {k: b[k] for k in ("start", "seconds", "interval_s", "base", "source", "values") if k in b}
        return json_response(201, self.create_heartrate(b["user"], **kw))

    def _ctl_sleep(self, req: Request) -> Response:
        b = req.json()
        if "user" not in b:
            return json_response(400, {"error": "user is required"})
        kw = {k: b[k] for k in ("bedtime_start", "seconds", "hr_base", "hrv_base", "notify") if k in b}
        return json_response(201, self.create_sleep(b["user"], **kw))

    def _ctl_daily_activity(self, req: Request) -> Response:
        b = req.json()
        if "user" not in b:
            return json_response(400, {"error": "user is required"})
        kw = {k: b[k] for k in ("day", "steps", "notify") if k in b}
        return json_response(201, self.create_daily_activity(b["user"], **kw))
