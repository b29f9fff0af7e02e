"""WHOOP developer API v2 emulator.

Follows developer.whoop.com: OAuth 2.0 at api.prod.whoop.com/oauth/oauth2/auth and /oauth/oauth2/token
(client credentials in the form body, space-separated scopes, no PKCE, `state` of at least 8
characters, a refresh token only with the `offline` scope, access tokens of 3600 s, a new refresh
token with every refresh); the v2 API under /developer: user/profile/basic, user/measurement/body,
DELETE user/access (revocation, which also ends the user's webhooks), activity/sleep and
activity/workout (by UUID, and as collections with start / end / limit ≤ 25 / nextToken, newest
first), recovery (collection), cycle (collection, by id, its sleep, its recovery); `SCORED`,
`PENDING_SCORE` and `UNSCORABLE` records (a score only when `SCORED`); rate limits of 100 requests a
minute and 10,000 a day per app with X-RateLimit-Limit / -Remaining / -Reset headers; webhooks to
the URL set in the Developer Dashboard (model v2): {user_id, id, type, trace_id}, `id` a UUID (a
recovery's is its sleep's), signed with X-WHOOP-Signature-Timestamp (epoch ms) and X-WHOOP-Signature
= base64 HMAC-SHA256(client_secret, timestamp + body) (vector B2).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from .base import (ApiError, Emulator, Request, Response, Route, add_query, compact, json_response, parse_iso,
                   redirect, seeded_rng)

SCOPES = ("read:recovery", "read:cycles", "read:workout", "read:sleep", "read:profile", "read:body_measurement",
          "offline")
EVENT_TYPES = ("workout.updated", "workout.deleted", "sleep.updated", "sleep.deleted", "recovery.updated",
               "recovery.deleted")
SCORE_STATES = ("SCORED", "PENDING_SCORE", "UNSCORABLE")
API = "/developer"


def sign(client_secret: str, timestamp: str, body: bytes) -> str:
    """The X-WHOOP-Signature value for `body` sent with X-WHOOP-Signature-Timestamp `timestamp`
    (vector B2)."""
    mac = hmac.new(client_secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def iso_ms(t: float) -> str:
    """WHOOP's date-time: UTC with milliseconds, 2022-04-24T11:25:44.774Z."""
    ms = int(round(t * 1000))
    return datetime.fromtimestamp(ms // 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def tzd(offset_s: int) -> str:
    """A W3C time zone designator: Z, +hh:mm or -hh:mm."""
    if offset_s == 0:
        return "Z"
    sign_ = "+" if offset_s > 0 else "-"
    hh, mm = divmod(abs(offset_s) // 60, 60)
    return f"{sign_}{hh:02d}:{mm:02d}"


def message(status: int, text: str, headers=()) -> Response:
    return json_response(status, {"message": text}, headers)


def _uuid(rng) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _public(doc: dict | None) -> dict | None:
    return None if doc is None else {k: v for k, v in doc.items() if not k.startswith("_")}


class WhoopEmulator(Emulator):
    vendor = "whoop"
    display_name = "WHOOP"
    scope_separator = " "
    scopes_supported = SCOPES
    authorize_path = "/oauth/oauth2/auth"
    token_path = "/oauth/oauth2/token"
    client_auth_methods = ("body",)
    user_id_type = int
    default_user_id = 10129                 # the user of WHOOP's examples and of vector B2

    VENDOR_DEFAULTS = {
        "access_ttl_s": 3600,
        "webhook_timeout_s": 10.0,
        "rate_limit_per_min": 100,
        "rate_limit_per_day": 10000,
        "state_min_length": 8,
        "dashboard_webhook_url": None,      # the App's Webhook URL in the Developer Dashboard
    }

    def __init__(self, *args, **kwargs):
        self.sleeps: dict[str, dict] = {}
        self.workouts: dict[str, dict] = {}
        self.cycles: dict[int, dict] = {}
        self.recoveries: dict[int, dict] = {}        # by cycle id
        self.refresh_scope_param = {"offline": 0, "other": 0, "none": 0}
        self.rate_limited_answers = 0
        self._next_cycle = 93844
        self._serial = 0
        super().__init__(*args, **kwargs)

    def urls(self) -> dict[str, str]:
        return {**super().urls(), "api": self.url(API)}

    def new_user_id(self) -> Any:
        self._next_user += 1
        return 20000 + self._next_user

    # ------------------------------------------------------------------------------------------ routes

    def register_routes(self) -> None:
        r = self.route
        r("GET", f"{API}/v2/user/profile/basic", self._profile, api=True)
        r("GET", f"{API}/v2/user/measurement/body", self._body_measurement, api=True)
        r("DELETE", f"{API}/v2/user/access", self._revoke_access, api=True)
        r("GET", f"{API}/v2/activity/sleep", self._list_sleeps, api=True)
        r("GET", f"{API}/v2/activity/sleep/{{sleep_id}}", self._get_sleep, api=True)
        r("GET", f"{API}/v2/activity/workout", self._list_workouts, api=True)
        r("GET", f"{API}/v2/activity/workout/{{workout_id}}", self._get_workout, api=True)
        r("GET", f"{API}/v2/recovery", self._list_recoveries, api=True)
        r("GET", f"{API}/v2/cycle", self._list_cycles, api=True)
        r("GET", f"{API}/v2/cycle/{{cycle_id}}", self._get_cycle, api=True)
        r("GET", f"{API}/v2/cycle/{{cycle_id}}/recovery", self._cycle_recovery, api=True)
        r("GET", f"{API}/v2/cycle/{{cycle_id}}/sleep", self._cycle_sleep, api=True)
        r("POST", "/_emulator/sleep", self._ctl_sleep, control=True)
        r("POST", "/_emulator/workout", self._ctl_workout, control=True)
        r("POST", "/_emulator/sleep/{record_id}/update", self._ctl_update, control=True)
        r("POST", "/_emulator/workout/{record_id}/update", self._ctl_update, control=True)
        r("POST", "/_emulator/recovery/{record_id}/update", self._ctl_update, control=True)
        r("DELETE", "/_emulator/sleep/{record_id}", self._ctl_delete, control=True)
        r("DELETE", "/_emulator/workout/{record_id}", self._ctl_delete, control=True)

    # ------------------------------------------------------------------------------------- OAuth shapes

    def _authorize_get(self, req: Request) -> Response:
        # WHOOP refuses a missing or short state (an 8-character minimum) with an error redirect.
        state = req.q("state")
        redirect_uri = req.q("redirect_uri")
        if (req.q("client_id") == self.client_id and redirect_uri and self._redirect_allowed(redirect_uri)
                and (state is None or len(state) < int(self.opt("state_min_length")))):
            params = [("error", "invalid_state"),
                      ("error_description", "The state is missing or does not have enough characters and is "
                                            "therefore considered too weak.")]
            if state is not None:
                params.append(("state", state))
            return redirect(add_query(redirect_uri, params))
        return super()._authorize_get(req)

    def offline_requested(self, req: Request) -> bool:
        return "offline" in self.parse_scopes(req.q("scope"))

    def _issue(self, grant, parent_refresh, with_refresh):
        # A refresh token exists only for a grant that includes `offline` (the user may untick it).
        return super()._issue(grant, parent_refresh, with_refresh and "offline" in grant.scopes)

    def _token(self, req: Request) -> Response:
        form = req.form()
        if form.get("grant_type") == "refresh_token":
            # WHOOP's tutorials send scope=offline with a refresh; RFC 6749 §6 lets a client leave the
            # scope out (the granted one then applies). Counted, so tests can see what a client sends.
            scopes = self.parse_scopes(form.get("scope"))
            kind = "none" if not scopes else ("offline" if "offline" in scopes else "other")
            with self.lock:
                self.refresh_scope_param[kind] += 1
        return super()._token(req)

    def token_body(self, grant, access, refresh, exchange) -> dict:
        body = {"access_token": access.token, "expires_in": int(round(access.expires_at - self.now()))}
        if refresh is not None:
            body["refresh_token"] = refresh.token
        body.update(scope=" ".join(grant.scopes), token_type="bearer")
        return body

    def not_found(self, req) -> Response:
        return message(404, "No resource found")

    def server_error(self, req, status) -> Response:
        return message(status, "Server error occurred while making request")

    def unauthorized(self, req, reason) -> Response:
        return message(401, f"Invalid authorization: {reason}", [("WWW-Authenticate", 'Bearer error="invalid_token"')])

    def insufficient_scope(self, req, needed) -> Response:
        return message(403, f"Forbidden: the token lacks the scope {' or '.join(needed)}")

    # ------------------------------------------------------------------------------------- rate limits

    WINDOWS = (60, 86400)

    def _limits(self) -> tuple[int, int]:
        return int(self.opt("rate_limit_per_min")), int(self.opt("rate_limit_per_day"))

    def check_rate_limit(self, req: Request, route: Route) -> Response | None:
        with self.lock:
            usage = self.rate.hit("app", self.WINDOWS, self.now())
        if any(n > limit for (n, _), limit in zip(usage, self._limits())):
            return self.too_many_requests(req, route)
        return None

    def rate_limit_headers(self, req: Request, route: Route | None) -> list[tuple[str, str]]:
        """developer.whoop.com/docs/developing/rate-limiting: the limit closest to being hit first, then
        every limit with its window; Remaining and Reset (seconds) of that closest limit."""
        with self.lock:
            usage = self.rate.hit("app", self.WINDOWS, self.now(), count=False)
        limits = self._limits()
        windows = [(max(0, limit - n), limit, reset) for (n, reset), limit in zip(usage, limits)]
        remaining, limit, reset = min(windows, key=lambda w: (w[0], w[1]))
        policy = ", ".join(f"{lim};window={w}" for lim, w in zip(limits, self.WINDOWS))
        return [("X-RateLimit-Limit", f"{limit}, {policy}"), ("X-RateLimit-Remaining", str(remaining)),
                ("X-RateLimit-Reset", str(max(0, math.ceil(reset))))]

    def too_many_requests(self, req, route) -> Response:
        with self.lock:
            self.rate_limited_answers += 1
        return message(429, "Request rejected due to rate limiting",
                       [*self.retry_after_headers(), *self.rate_limit_headers(req, route)])

    # ------------------------------------------------------------------------------------------- user

    def _profile(self, req: Request) -> Response:
        user, _ = self.authorize_bearer(req, ("read:profile",))
        return json_response(200, {"user_id": user.id, "email": f"member{user.id}@example.com",
                                   "first_name": "Member", "last_name": str(user.id)})

    def _body_measurement(self, req: Request) -> Response:
        user, _ = self.authorize_bearer(req, ("read:body_measurement",))
        rng = seeded_rng(self.seed, "whoop", "body", user.id)
        return json_response(200, {"height_meter": round(rng.uniform(1.55, 1.95), 4),
                                   "weight_kilogram": round(rng.uniform(55, 100), 4),
                                   "max_heart_rate": rng.randint(180, 200)})

    def _revoke_access(self, req: Request) -> Response:
        _, grant = self.authorize_bearer(req)
        with self.lock:
            if not grant.revoked:
                self._revoke_grant(grant, "revoke")
        return Response(204)

    def _has_active_grant(self, user_id: Any) -> bool:
        with self.lock:
            return any(not g.revoked and g.client_id == self.client_id for g in self.user_grants.get(user_id, ()))

    # ---------------------------------------------------------------------------------------- records

    def _owned(self, doc: dict | None, user) -> dict:
        if doc is None or doc["_user"] != user.id:
            raise ApiError(self.not_found(None))
        return _public(doc)

    def _get_sleep(self, req: Request) -> Response:
        user, _ = self.authorize_bearer(req, ("read:sleep",))
        with self.lock:
            return json_response(200, self._owned(self.sleeps.get(req.params["sleep_id"]), user))

    def _get_workout(self, req: Request) -> Response:
        user, _ = self.authorize_bearer(req, ("read:workout",))
        with self.lock:
            return json_response(200, self._owned(self.workouts.get(req.params["workout_id"]), user))

    def _cycle_id(self, req: Request) -> int:
        try:
            return int(req.params["cycle_id"])
        except ValueError:
            raise ApiError(message(400, "Client error constructing the request: cycleId must be an integer"))

    def _get_cycle(self, req: Request) -> Response:
        user, _ = self.authorize_bearer(req, ("read:cycles",))
        with self.lock:
            return json_response(200, self._owned(self.cycles.get(self._cycle_id(req)), user))

    def _cycle_recovery(self, req: Request) -> Response:
        user, _ = self.authorize_bearer(req, ("read:recovery",))
        with self.lock:
            return json_response(200, self._owned(self.recoveries.get(self._cycle_id(req)), user))

    def _cycle_sleep(self, req: Request) -> Response:
        user, _ = self.authorize_bearer(req, ("read:sleep",))
        cycle_id = self._cycle_id(req)
        with self.lock:
            mains = [s for s in self.sleeps.values() if s["cycle_id"] == cycle_id and not s["nap"]]
            return json_response(200, self._owned(mains[0] if mains else None, user))

    def _collection(self, req: Request, docs: list[dict], span, kind: str) -> Response:
        """A page of `docs` (span(doc) -> (start, end or None)) newest first: `start` inclusive (what
        occurred after or during it), `end` exclusive, `limit` ≤ 25 (default 10), `nextToken`."""
        try:
            limit = int(req.q("limit") or 10)
            start = parse_iso(req.q("start")) if req.q("start") else None
            end = parse_iso(req.q("end")) if req.q("end") else self.now()
        except ValueError:
            return message(400, "Client error constructing the request: start, end and limit")
        if not 1 <= limit <= 25:
            return message(400, "Client error constructing the request: limit must be between 1 and 25")
        chosen = []
        for d in docs:
            s, e = span(d)
            if s < end and (start is None or (e if e is not None else self.now()) >= start):
                chosen.append((s, d))
        chosen.sort(key=lambda p: (-p[0], str(p[1].get("id", p[1].get("cycle_id")))))
        fingerprint = f"{kind}|{req.q('start')}|{req.q('end')}"
        offset = 0
        token = req.q("nextToken")
        if token:
            try:
                tok = json.loads(base64.urlsafe_b64decode(token.encode()))
                if tok["f"] != hashlib.sha256(fingerprint.encode()).hexdigest()[:16]:
                    raise ValueError
                offset = int(tok["o"])
            except (ValueError, KeyError, TypeError):
                return message(400, "Client error constructing the request: invalid nextToken")
        page = [_public(d) for _, d in chosen[offset:offset + limit]]
        out: dict = {"records": page}
        if offset + limit < len(chosen):
            out["next_token"] = base64.urlsafe_b64encode(json.dumps(
                {"o": offset + limit, "f": hashlib.sha256(fingerprint.encode()).hexdigest()[:16]}).encode()).decode()
        return json_response(200, out)

    def _list_sleeps(self, req: Request) -> Response:
        user, _ = self.authorize_bearer(req, ("read:sleep",))
        with self.lock:
            docs = [d for d in self.sleeps.values() if d["_user"] == user.id]
        return self._collection(req, docs, lambda d: (d["_start"], d["_end"]), f"sleep|{user.id}")

    def _list_workouts(self, req: Request) -> Response:
        user, _ = self.authorize_bearer(req, ("read:workout",))
        with self.lock:
            docs = [d for d in self.workouts.values() if d["_user"] == user.id]
        return self._collection(req, docs, lambda d: (d["_start"], d["_end"]), f"workout|{user.id}")

    def _list_recoveries(self, req: Request) -> Response:
        user, _ = self.authorize_bearer(req, ("read:recovery",))
        with self.lock:
            docs = [d for d in self.recoveries.values() if d["_user"] == user.id]
            spans = {id(d): (self.sleeps[d["sleep_id"]]["_start"], self.sleeps[d["sleep_id"]]["_end"])
                     for d in docs if d["sleep_id"] in self.sleeps}
        docs = [d for d in docs if id(d) in spans]
        return self._collection(req, docs, lambda d: spans[id(d)], f"recovery|{user.id}")

    def _list_cycles(self, req: Request) -> Response:
        user, _ = self.authorize_bearer(req, ("read:cycles",))
        with self.lock:
            docs = [d for d in self.cycles.values() if d["_user"] == user.id]
        return self._collection(req, docs, lambda d: (d["_start"], d.get("_end")), f"cycle|{user.id}")

    # ------------------------------------------------------------------------------------ data making

    def _stamp(self, doc: dict, created: float) -> None:
        doc["created_at"] = iso_ms(created)
        doc["updated_at"] = iso_ms(created)

    def _sleep_score(self, rng, seconds: float, respiratory_rate: float | None) -> dict:
        in_bed = int(seconds * 1000)
        awake = int(in_bed * rng.uniform(0.04, 0.1))
        asleep = in_bed - awake
        sws, rem = int(asleep * 0.22), int(asleep * 0.2)
        return {"stage_summary": {"total_in_bed_time_milli": in_bed, "total_awake_time_milli": awake,
                                  "total_no_data_time_milli": 0, "total_light_sleep_time_milli": asleep - sws - rem,
                                  "total_slow_wave_sleep_time_milli": sws, "total_rem_sleep_time_milli": rem,
                                  "sleep_cycle_count": max(1, int(seconds // 5400)),
                                  "disturbance_count": rng.randint(3, 15)},
                "sleep_needed": {"baseline_milli": 27395716, "need_from_sleep_debt_milli": rng.randint(0, 900000),
                                 "need_from_recent_strain_milli": rng.randint(0, 400000),
                                 "need_from_recent_nap_milli": 0},
                "respiratory_rate": respiratory_rate if respiratory_rate is not None
                else round(rng.uniform(13.5, 17.5), 8),
                "sleep_performance_percentage": float(rng.randint(60, 100)),
                "sleep_consistency_percentage": float(rng.randint(60, 95)),
                "sleep_efficiency_percentage": round(100 * asleep / in_bed, 8)}

    def _recovery_score(self, rng, values: dict) -> dict:
        score = {"user_calibrating": False, "recovery_score": float(rng.randint(20, 99)),
                 "resting_heart_rate": float(rng.randint(44, 66)),
                 "hrv_rmssd_milli": round(rng.uniform(25, 110), 6),
                 "spo2_percentage": round(rng.uniform(94, 99), 4),
                 "skin_temp_celsius": round(rng.uniform(32.5, 34.5), 2)}
        for key, value in values.items():
            if value is None:
                score.pop(key, None)      # e.g. a strap before 4.0: no SpO2 or skin temperature
            else:
                score[key] = value
        return score

    def _workout_score(self, rng, seconds: float, sport: str, distance_meter) -> dict:
        zones = [int(seconds * 1000 * f) for f in (0.05, 0.15, 0.3, 0.3, 0.15, 0.05)]
        score = {"strain": round(rng.uniform(4, 18), 4), "average_heart_rate": rng.randint(110, 160),
                 "max_heart_rate": rng.randint(165, 190), "kilojoule": round(seconds * rng.uniform(0.6, 1.1), 4),
                 "percent_recorded": 100.0,
                 "zone_durations": dict(zip(("zone_zero_milli", "zone_one_milli", "zone_two_milli",
                                             "zone_three_milli", "zone_four_milli", "zone_five_milli"), zones))}
        if distance_meter is None and sport in ("running", "cycling", "walking"):
            distance_meter = round(seconds * rng.uniform(2.2, 3.4), 8)
        if distance_meter:
            score.update(distance_meter=distance_meter, altitude_gain_meter=round(rng.uniform(5, 80), 8),
                         altitude_change_meter=round(rng.uniform(-3, 3), 8))
        return score

    def _cycle_for(self, owner, start: float, nap: bool) -> dict:
        """A nap belongs to the cycle it falls in; a main sleep starts a new cycle (WHOOP's day runs
        from falling asleep to falling asleep) and ends the previous one. Caller holds the lock."""
        mine = sorted((c for c in self.cycles.values() if c["_user"] == owner.id), key=lambda c: c["_start"])
        if nap:
            for c in reversed(mine):
                if c["_start"] <= start:
                    return c
        self._next_cycle += 1
        rng = seeded_rng(self.seed, "whoop", "cycle", owner.id, self._next_cycle)
        cycle = {"id": self._next_cycle, "user_id": owner.id, "created_at": "", "updated_at": "",
                 "start": iso_ms(start), "timezone_offset": tzd(owner.utc_offset_s), "score_state": "SCORED",
                 "score": {"strain": round(rng.uniform(5, 18), 7), "kilojoule": round(rng.uniform(6000, 12000), 3),
                           "average_heart_rate": rng.randint(60, 80), "max_heart_rate": rng.randint(140, 185)},
                 "_user": owner.id, "_start": start}
        self._stamp(cycle, start)
        previous = [c for c in mine if c["_start"] < start and c.get("_end") is None]
        if previous:
            previous[-1]["_end"] = start
            previous[-1]["end"] = iso_ms(start)
        self.cycles[cycle["id"]] = cycle
        return cycle

    def create_sleep(self, user: Any, start: float | None = None, seconds: float = 8 * 3600, nap: bool = False,
                     score_state: str = "SCORED", respiratory_rate: float | None = None, recovery: bool = True,
                     recovery_state: str = "SCORED", recovery_score: dict | None = None,
                     notify: bool = False) -> dict:
        """A sleep (or nap) with its cycle and, for a main sleep, the recovery computed from it.
        `recovery_score` overrides score fields (None values remove one). Returns {sleep, recovery,
        cycle} as the API shows them (+ "webhooks": the deliveries of sleep.updated and
        recovery.updated with `notify`)."""
        owner = self.get_user(user)
        if score_state not in SCORE_STATES or recovery_state not in SCORE_STATES:
            raise ApiError(json_response(400, {"error": f"score states are {', '.join(SCORE_STATES)}"}))
        start = float(self.now() - seconds - 1800 if start is None else start)
        end = start + float(seconds)
        with self.lock:
            self._serial += 1
            rng = seeded_rng(self.seed, "whoop", "sleep", owner.id, start, self._serial)
            cycle = self._cycle_for(owner, start, nap)
            sleep = {"id": _uuid(rng), "cycle_id": cycle["id"], "user_id": owner.id, "created_at": "",
                     "updated_at": "", "start": iso_ms(start), "end": iso_ms(end),
                     "timezone_offset": tzd(owner.utc_offset_s), "nap": bool(nap), "score_state": score_state,
                     "_user": owner.id, "_start": start, "_end": end}
            if score_state == "SCORED":
                sleep["score"] = self._sleep_score(rng, seconds, respiratory_rate)
            self._stamp(sleep, end + 300)
            self.sleeps[sleep["id"]] = sleep
            rec = None
            if recovery and not nap:
                rec = {"cycle_id": cycle["id"], "sleep_id": sleep["id"], "user_id": owner.id, "created_at": "",
                       "updated_at": "", "score_state": recovery_state, "_user": owner.id}
                if recovery_state == "SCORED":
                    rec["score"] = self._recovery_score(rng, recovery_score or {})
                self._stamp(rec, end + 600)
                self.recoveries[cycle["id"]] = rec
            out = {"sleep": _public(sleep), "recovery": _public(rec), "cycle": _public(cycle)}
        if notify:
            out["webhooks"] = [self.notify(type="sleep.updated", id=sleep["id"], user_id=owner.id)]
            if rec is not None:
                out["webhooks"].append(self.notify(type="recovery.updated", id=sleep["id"], user_id=owner.id))
        return out

    def create_workout(self, user: Any, start: float | None = None, seconds: float = 3600,
                       sport_name: str = "running", distance_meter: float | None = None,
                       score_state: str = "SCORED", notify: bool = False) -> dict:
        """A workout; running, cycling and walking get a distance unless `distance_meter` is 0. Returns
        it as the API shows it (+ "webhook" with `notify`)."""
        owner = self.get_user(user)
        if score_state not in SCORE_STATES:
            raise ApiError(json_response(400, {"error": f"score states are {', '.join(SCORE_STATES)}"}))
        start = float(self.now() - seconds - 600 if start is None else start)
        end = start + float(seconds)
        with self.lock:
            self._serial += 1
            rng = seeded_rng(self.seed, "whoop", "workout", owner.id, start, self._serial)
            doc = {"id": _uuid(rng), "user_id": owner.id, "created_at": "", "updated_at": "",
                   "start": iso_ms(start), "end": iso_ms(end), "timezone_offset": tzd(owner.utc_offset_s),
                   "sport_name": sport_name, "score_state": score_state,
                   "_user": owner.id, "_start": start, "_end": end, "_distance": distance_meter}
            if score_state == "SCORED":
                doc["score"] = self._workout_score(rng, seconds, sport_name, distance_meter)
            self._stamp(doc, end + 120)
            self.workouts[doc["id"]] = doc
            out = _public(doc)
        if notify:
            out["webhook"] = self.notify(type="workout.updated", id=doc["id"], user_id=owner.id)
        return out

    def update_record(self, kind: str, record_id: str, score_state: str | None = None,
                      notify: bool = False, **score_fields) -> dict:
        """Changes a record's score state (a score appears when it becomes SCORED) or score fields and
        bumps updated_at; `notify` sends <kind>.updated. A recovery is named by its sleep's UUID."""
        if score_state is not None and score_state not in SCORE_STATES:
            raise ApiError(json_response(400, {"error": f"score states are {', '.join(SCORE_STATES)}"}))
        with self.lock:
            if kind == "recovery":
                doc = next((r for r in self.recoveries.values() if r["sleep_id"] == record_id), None)
            else:
                doc = (self.sleeps if kind == "sleep" else self.workouts).get(record_id)
            if doc is None:
                raise ApiError(json_response(404, {"error": f"no {kind} {record_id}"}))
            rng = seeded_rng(self.seed, "whoop", "rescore", kind, record_id, doc["updated_at"])
            if score_state is not None:
                doc["score_state"] = score_state
                if score_state != "SCORED":
                    doc.pop("score", None)
                elif "score" not in doc:
                    if kind == "sleep":
                        doc["score"] = self._sleep_score(rng, doc["_end"] - doc["_start"], None)
                    elif kind == "workout":
                        doc["score"] = self._workout_score(rng, doc["_end"] - doc["_start"], doc["sport_name"],
                                                           doc["_distance"])
                    else:
                        doc["score"] = self._recovery_score(rng, {})
            if score_fields and "score" in doc:
                doc["score"].update(score_fields)
            doc["updated_at"] = iso_ms(self.now())
            out = _public(doc)
            user_id = doc["_user"]
        if notify:
            out["webhook"] = self.notify(type=f"{kind}.updated", id=record_id, user_id=user_id)
        return out

    def delete_sleep(self, sleep_id: str, notify: bool = True) -> dict:
        """The member deletes a sleep: its recovery goes with it; sleep.deleted and recovery.deleted."""
        with self.lock:
            sleep = self.sleeps.pop(sleep_id, None)
            if sleep is None:
                raise ApiError(json_response(404, {"error": f"no sleep {sleep_id}"}))
            rec = self.recoveries.get(sleep["cycle_id"])
            if rec is not None and rec["sleep_id"] == sleep_id:
                del self.recoveries[sleep["cycle_id"]]
            else:
                rec = None
        out: dict = {"webhooks": []}
        if notify:
            out["webhooks"].append(self.notify(type="sleep.deleted", id=sleep_id, user_id=sleep["_user"]))
            if rec is not None:
                out["webhooks"].append(self.notify(type="recovery.deleted", id=sleep_id, user_id=sleep["_user"]))
        return out

    def delete_workout(self, workout_id: str, notify: bool = True) -> dict:
        with self.lock:
            doc = self.workouts.pop(workout_id, None)
        if doc is None:
            raise ApiError(json_response(404, {"error": f"no workout {workout_id}"}))
        return {"webhooks": [self.notify(type="workout.deleted", id=workout_id, user_id=doc["_user"])]
                if notify else []}

    # ---------------------------------------------------------------------------------------- webhooks

    def preprovision_webhook(self, url: str) -> None:
        self.config["dashboard_webhook_url"] = url

    def subscriptions_state(self) -> list:
        url = self.opt("dashboard_webhook_url")
        return [{"url": url, "model_version": "v2"}] if url else []

    def webhook_event(self, type: str = "sleep.updated", id: Any = None, user_id: Any = None,
                      trace_id: str | None = None, target: str | None = None) -> list:
        """{user_id, id, type, trace_id} to the dashboard's webhook URL when the user has an active
        grant for this app (WHOOP stops a user's webhooks when access is revoked), or to `target`."""
        if type not in EVENT_TYPES and target is None:
            raise ApiError(json_response(400, {"error": f"type must be one of {', '.join(EVENT_TYPES)}"}))
        user = self.user_key(user_id if user_id is not None else self.default_user_id)
        url = self.opt("dashboard_webhook_url")
        dests = [target] if target else ([url] if url and self._has_active_grant(user) else [])
        body = compact({"user_id": user, "id": id, "type": type, "trace_id": trace_id or str(uuid.uuid4())})
        return [lambda dest=dest: self._post(dest, body, type) for dest in dests]

    def _post(self, url: str, body: bytes, label: str) -> dict:
        ts = str(int(time.time() * 1000))
        return self.deliver(url, body, {"X-WHOOP-Signature-Timestamp": ts,
                                        "X-WHOOP-Signature": sign(self.client_secret, ts, body)},
                            label, success=lambda s: 200 <= s < 300)

    # ----------------------------------------------------------------------------------------- control

    def state(self, brief: bool = False, user: Any = None) -> dict:
        out = super().state(brief=brief, user=user)
        with self.lock:
            out["refresh_scope_param"] = dict(self.refresh_scope_param)
            out["rate_limited_answers"] = self.rate_limited_answers
            out["records"] = {"sleeps": len(self.sleeps), "workouts": len(self.workouts),
                              "cycles": len(self.cycles), "recoveries": len(self.recoveries)}
        return out

    def _ctl_sleep(self, req: Request) -> Response:
        b = req.json()
        if "user" not in b:
            return json_response(400, {"error": "user is required"})
        kw = {k: b[k] for k in ("start", "seconds", "nap", "score_state", "respiratory_rate", "recovery",
                                "recovery_state", "recovery_score", "notify") if k in b}
        return json_response(201, self.create_sleep(b["user"], **kw))

    def _ctl_workout(self, req: Request) -> Response:
        b = req.json()
        if "user" not in b:
            return json_response(400, {"error": "user is required"})
        kw = {k: b[k] for k in ("start", "seconds", "sport_name", "distance_meter", "score_state", "notify")
              if k in b}
        return json_response(201, self.create_workout(b["user"], **kw))

    def _ctl_update(self, req: Request) -> Response:
        kind = req.path.split("/")[2]
        try:
            return json_response(200, self.update_record(kind, req.params["record_id"], **req.json()))
        except TypeError as e:
            return json_response(400, {"error": str(e)})

    def _ctl_delete(self, req: Request) -> Response:
        kind = req.path.split("/")[2]
        notify = req.q("notify", "true") != "false"
        if kind == "sleep":
            return json_response(200, self.delete_sleep(req.params["record_id"], notify=notify))
        return json_response(200, self.delete_workout(req.params["record_id"], notify=notify))
