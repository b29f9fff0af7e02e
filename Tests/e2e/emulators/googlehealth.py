"""Google Health API (health.googleapis.com v4, the successor of the Fitbit Web API) emulator.

Follows developers.google.com/health: OAuth 2.0 for web server apps (accounts.google.com authorize
with access_type=offline for a refresh token, PKCE S256/plain, oauth2.googleapis.com/token with
client_secret_post or Basic, no refresh-token rotation, /revoke), the reference of
users.dataTypes.dataPoints.list (GET /v4/users/{user}/dataTypes/{dataType}/dataPoints with an AIP-160
`filter`, `pageSize` default 1440 max 10000, `pageToken`/`nextPageToken`), the DataPoint union
(heartRate, steps, heartRateVariability, oxygenSaturation, weight with ObservationSampleTime /
ObservationTimeInterval; int64 values are JSON strings, proto3 JSON drops zero fields),
users.getIdentity, projects.subscribers (create answers a long-running Operation; the endpoint is
verified with two POSTs of {"type": "verification"}, with the Authorization secret -> 201, without
-> 401/403) and the webhooks guide (notifications {"data": {...}} carrying that Authorization header
and X-HEALTHAPI-SIGNATURE).

The signature: an ECDSA P-256 / SHA-256 signature of the raw body in Tink's wire format,
0x01 || 4-byte big-endian key id || DER(r, s), base64-encoded, verifiable with the public keyset Google
publishes at www.gstatic.com/googlehealthapi/webhooks/webhooks_public_keyset.json (a Tink JSON keyset
whose EcdsaPublicKey params are SHA256 / NIST_P256 / DER). The emulator serves its own keyset at the
same path and the PEM at /_emulator/public-key.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import json
import math
import re
import secrets
from datetime import datetime, timezone
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .base import (ApiError, Emulator, Request, Response, Route, compact, http_request, iso_z, json_response,
                   parse_iso, seeded_rng)

SCOPE_PREFIX = "https://www.googleapis.com/auth/googlehealth."
AREAS = ("activity_and_fitness", "health_metrics_and_measurements", "sleep", "nutrition", "location", "ecg",
         "irn", "profile", "settings")
SCOPES = tuple(f"{SCOPE_PREFIX}{a}{s}" for a in AREAS for s in ("", ".readonly", ".writeonly")) + (
    "openid", "email", "profile", "https://www.googleapis.com/auth/userinfo.email",
    "https://www.googleapis.com/auth/userinfo.profile")

# Data types the API knows: kebab-case id -> (scope area, record kind). The emulator generates data
# for GENERATED; the others list as empty collections, as a user without that data would.
DATA_TYPES = {
    "heart-rate": ("health_metrics_and_measurements", "sample"),
    "heart-rate-variability": ("health_metrics_and_measurements", "sample"),
    "oxygen-saturation": ("health_metrics_and_measurements", "sample"),
    "weight": ("health_metrics_and_measurements", "sample"),
    "body-fat": ("health_metrics_and_measurements", "sample"),
    "height": ("health_metrics_and_measurements", "sample"),
    "blood-glucose": ("health_metrics_and_measurements", "sample"),
    "core-body-temperature": ("health_metrics_and_measurements", "sample"),
    "respiratory-rate-sleep-summary": ("health_metrics_and_measurements", "sample"),
    "daily-heart-rate-variability": ("health_metrics_and_measurements", "daily"),
    "daily-heart-rate-zones": ("health_metrics_and_measurements", "daily"),
    "daily-oxygen-saturation": ("health_metrics_and_measurements", "daily"),
    "daily-respiratory-rate": ("health_metrics_and_measurements", "daily"),
    "daily-resting-heart-rate": ("health_metrics_and_measurements", "daily"),
    "daily-sleep-temperature-derivations": ("health_metrics_and_measurements", "daily"),
    "steps": ("activity_and_fitness", "interval"),
    "distance": ("activity_and_fitness", "interval"),
    "altitude": ("activity_and_fitness", "interval"),
    "floors": ("activity_and_fitness", "interval"),
    "active-minutes": ("activity_and_fitness", "interval"),
    "active-zone-minutes": ("activity_and_fitness", "interval"),
    "active-energy-burned": ("activity_and_fitness", "interval"),
    "sedentary-period": ("activity_and_fitness", "interval"),
    "time-in-heart-rate-zone": ("activity_and_fitness", "interval"),
    "run-vo2-max": ("activity_and_fitness", "sample"),
    "vo2-max": ("activity_and_fitness", "sample"),
    "exercise": ("activity_and_fitness", "session"),
    "sleep": ("sleep", "session"),
}
# What generate() makes: default spacing (s), default level.
GENERATED = {"heart-rate": (5, 70), "steps": (60, 80), "heart-rate-variability": (300, 40),
             "oxygen-saturation": (60, 96), "weight": (86400, 72500)}
# Data types a subscriber may name (the projects.subscribers reference; newer guide pages list more).
WEBHOOK_TYPES = ("altitude", "distance", "floors", "sleep", "steps", "weight", "heart-rate",
                 "heart-rate-variability", "exercise", "active-zone-minutes", "body-fat",
                 "daily-heart-rate-variability", "daily-oxygen-saturation", "daily-resting-heart-rate")
IDENTIFIABLE = {"weight", "body-fat", "height", "blood-glucose", "exercise", "sleep"}
SIGNATURE_HEADER = "X-HEALTHAPI-SIGNATURE"
_FILTER = re.compile(r'^\s*([a-z0-9_]+)\.(interval\.start_time|interval\.civil_start_time|'
                     r'sample_time\.physical_time|sample_time\.civil_time)\s*(>=|<)\s*"([^"]+)"\s*$')


def camel(kebab: str) -> str:
    head, *rest = kebab.split("-")
    return head + "".join(p.capitalize() for p in rest)


# ------------------------------------------------------------------------------------ signatures


def private_key_for_seed(seed: Any) -> ec.EllipticCurvePrivateKey:
    """A P-256 key derived from the seed, so a seeded run signs with the same key every time."""
    n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    scalar = int.from_bytes(hashlib.sha256(f"{seed}:googlehealth:webhook-key".encode()).digest(), "big") % (n - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP256R1())


def key_id_for_seed(seed: Any) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:googlehealth:key-id".encode()).digest()[:4], "big") & 0x7FFFFFFF


def sign(private_key: ec.EllipticCurvePrivateKey, key_id: int, body: bytes) -> str:
    """X-HEALTHAPI-SIGNATURE for `body`: base64(0x01 || key id (4 bytes, big-endian) || DER signature)."""
    der = private_key.sign(body, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(b"\x01" + key_id.to_bytes(4, "big") + der).decode()


def verify(public_key: ec.EllipticCurvePublicKey, body: bytes, signature: str, key_id: int | None = None) -> bool:
    """Checks an X-HEALTHAPI-SIGNATURE value against the raw body (and the key id, if given)."""
    try:
        raw = base64.b64decode(signature, validate=True)
    except ValueError:
        return False
    if len(raw) < 6 or raw[0] != 1 or (key_id is not None and int.from_bytes(raw[1:5], "big") != key_id):
        return False
    try:
        public_key.verify(raw[5:], body, ec.ECDSA(hashes.SHA256()))
        return True
    except InvalidSignature:
        return False


def _proto_field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (payloads here are < 128 bytes)."""
    return bytes([(number << 3) | 2, len(payload)]) + payload


def tink_public_keyset(public_key: ec.EllipticCurvePublicKey, key_id: int) -> dict:
    """The public key as a Tink JSON keyset, the format Google publishes. EcdsaPublicKey: params
    {hash_type SHA256=3, curve NIST_P256=2, encoding DER=2}, x and y as 33-byte big-endian integers."""
    nums = public_key.public_numbers()
    params = bytes([0x08, 3, 0x10, 2, 0x18, 2])
    value = _proto_field(2, params) + _proto_field(3, nums.x.to_bytes(33, "big")) + _proto_field(4, nums.y.to_bytes(33, "big"))
    return {"primaryKeyId": key_id, "key": [{
        "keyData": {"typeUrl": "type.googleapis.com/google.crypto.tink.EcdsaPublicKey",
                    "value": base64.b64encode(value).decode(), "keyMaterialType": "ASYMMETRIC_PUBLIC"},
        "status": "ENABLED", "keyId": key_id, "outputPrefixType": "TINK"}]}


# ------------------------------------------------------------------------------------- time shapes


def civil(t: float, offset_s: int) -> dict:
    """CivilDateTime in proto3 JSON: google.type.Date + TimeOfDay, zero fields left out."""
    dt = datetime.fromtimestamp(int(t) + offset_s, tz=timezone.utc)
    tod = {k: v for k, v in (("hours", dt.hour), ("minutes", dt.minute), ("seconds", dt.second)) if v}
    return {"date": {"year": dt.year, "month": dt.month, "day": dt.day}, "time": tod}


def civil_iso(t: float, offset_s: int) -> str:
    return datetime.fromtimestamp(int(t) + offset_s, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def sample_time(t: float, offset_s: int) -> dict:
    return {"physicalTime": iso_z(t), "utcOffset": f"{offset_s}s", "civilTime": civil(t, offset_s)}


def interval(t0: float, t1: float, offset_s: int) -> dict:
    return {"startTime": iso_z(t0), "startUtcOffset": f"{offset_s}s", "endTime": iso_z(t1),
            "endUtcOffset": f"{offset_s}s", "civilStartTime": civil(t0, offset_s), "civilEndTime": civil(t1, offset_s)}


def google_error(status: int, code_name: str, message: str, details: list | None = None, headers=()) -> Response:
    err = {"code": status, "message": message, "status": code_name}
    if details:
        err["details"] = details
    return json_response(status, {"error": err}, headers)


class GoogleHealthEmulator(Emulator):
    vendor = "googlehealth"
    display_name = "Google Health API"
    server_header = "ESF"
    scope_separator = " "
    scopes_supported = SCOPES
    authorize_path = "/o/oauth2/v2/auth"
    token_path = "/token"
    client_auth_methods = ("basic", "body")
    supports_pkce = True
    token_requires_redirect_uri = True
    user_id_type = str
    default_user_id = "1234567890"
    redirect_includes_scope = True

    VENDOR_DEFAULTS = {
        "access_ttl_s": 3599,
        "rotate_refresh_tokens": False,
        "webhook_timeout_s": 10.0,
        "webhook_authorization": "Bearer emulator-webhook-secret",   # for the preprovisioned subscriber
        "signature_header": SIGNATURE_HEADER,
        "require_https_endpoint": False,   # Google requires https; loopback tests use http
        "project_token": None,             # None: any Bearer token may manage subscribers
        "rate_limit_per_user_per_min": 300,
    }

    def __init__(self, *args, **kwargs):
        self.points: dict[tuple[str, str], list[dict]] = {}
        self._next_point = 0
        self.subscribers: dict[str, dict] = {}
        self._next_operation = 0
        super().__init__(*args, **kwargs)
        self.private_key = private_key_for_seed(self.seed)
        self.public_key = self.private_key.public_key()
        self.key_id = key_id_for_seed(self.seed)

    @property
    def public_key_pem(self) -> str:
        return self.public_key.public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def urls(self) -> dict[str, str]:
        return {**super().urls(), "revoke": self.url("/revoke"), "api": self.url("/v4"),
                "webhook_keyset": self.url("/googlehealthapi/webhooks/webhooks_public_keyset.json")}

    def new_user_id(self) -> str:
        self._next_user += 1
        return str(2_000_000_000 + self._next_user)

    @staticmethod
    def legacy_user_id(user_id: str) -> str:
        """The user's Fitbit id (six characters like "228S74"), which getIdentity returns for migration."""
        return hashlib.sha256(str(user_id).encode()).hexdigest()[:6].upper()

    def new_token(self, kind: str) -> str:
        prefix = {"code": "4/0A", "access": "ya29.", "refresh": "1//0"}[kind]
        return prefix + secrets.token_urlsafe(90 if kind == "access" else 36)

    def offline_requested(self, req: Request) -> bool:
        # Google issues a refresh token only to access_type=offline requests.
        return req.q("access_type") == "offline"

    # ------------------------------------------------------------------------------------------ routes

    def register_routes(self) -> None:
        r = self.route
        r("POST", "/revoke", self._revoke)
        r("GET", "/v4/users/{user}/identity", self._identity, api=True)
        r("GET", "/v4/users/{user}/dataTypes/{data_type}/dataPoints", self._list_points, api=True)
        r("GET", "/v4/users/{user}/dataTypes/{data_type}/dataPoints/{point}", self._get_point, api=True)
        r("POST", "/v4/projects/{project}/subscribers", self._create_subscriber)
        r("GET", "/v4/projects/{project}/subscribers", self._list_subscribers)
        r("GET", "/v4/projects/{project}/subscribers/{subscriber}", self._get_subscriber)
        r("PATCH", "/v4/projects/{project}/subscribers/{subscriber}", self._patch_subscriber)
        r("DELETE", "/v4/projects/{project}/subscribers/{subscriber}", self._delete_subscriber)
        r("POST", "/v4/projects/{project}/subscribers/{subscriber}/subscriptions", self._create_subscription)
        r("GET", "/v4/projects/{project}/subscribers/{subscriber}/subscriptions", self._list_subscriptions)
        r("DELETE", "/v4/projects/{project}/subscribers/{subscriber}/subscriptions/{subscription}",
          self._delete_subscription)
        r("GET", "/googlehealthapi/webhooks/webhooks_public_keyset.json", self._keyset)
        r("GET", "/_emulator/public-key", self._ctl_public_key, control=True)
        r("POST", "/_emulator/datapoints", self._ctl_create_points, control=True)

    # ----------------------------------------------------------------------------------- answer shapes

    def token_error(self, error, status=400, description=None, field_name=None) -> Response:
        if error == "invalid_grant" and field_name == "redirect_uri":
            error = "redirect_uri_mismatch"      # Google's name for it
        text = {"invalid_client": "The OAuth client was not found." if field_name == "client_id" else "Unauthorized",
                "unsupported_grant_type": "Invalid grant_type"}.get(error)
        if error == "invalid_grant":
            text = "Token has been expired or revoked." if field_name == "refresh_token" else "Bad Request"
        body = {"error": error, "error_description": text or description or "Bad Request"}
        return json_response(status, body, [("Cache-Control", "no-store")])

    def token_body(self, grant, access, refresh, exchange) -> dict:
        body = {"access_token": access.token, "expires_in": int(round(access.expires_at - self.now()))}
        if refresh is not None:
            body["refresh_token"] = refresh.token
        body.update({"scope": " ".join(grant.scopes), "token_type": "Bearer"})
        return body

    def unauthorized(self, req, reason) -> Response:
        return google_error(401, "UNAUTHENTICATED",
                            "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
                            "cookie or other valid authentication credential. See "
                            "https://developers.google.com/identity/sign-in/web/devconsole-project.",
                            headers=[("WWW-Authenticate", 'Bearer realm="https://accounts.google.com/", '
                                                          'error="invalid_token"')])

    def insufficient_scope(self, req, needed) -> Response:
        needed = list(needed)
        return google_error(403, "PERMISSION_DENIED", "Request had insufficient authentication scopes.",
                            [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                              "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT", "domain": "googleapis.com",
                              "metadata": {"service": "health.googleapis.com"}}],
                            [("WWW-Authenticate", f'Bearer realm="https://accounts.google.com/", '
                                                  f'error="insufficient_scope", scope="{" ".join(needed)}"')])

    def not_found(self, req) -> Response:
        return google_error(404, "NOT_FOUND", "Requested entity was not found.")

    def server_error(self, req, status) -> Response:
        if status == 503:
            return google_error(503, "UNAVAILABLE", "The service is currently unavailable.")
        return google_error(status, "INTERNAL", "Internal error encountered.")

    def too_many_requests(self, req, route) -> Response:
        return google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Requests per user'.",
                            headers=self.retry_after_headers())

    def check_rate_limit(self, req: Request, route: Route) -> Response | None:
        key = req.bearer() or "anonymous"
        with self.lock:
            at = self.access_tokens.get(key)
            if at is not None:
                key = at.grant.user
            (usage, _), = self.rate.hit(("user", key), (60,), self.now())
        if usage > int(self.opt("rate_limit_per_user_per_min")):
            return self.too_many_requests(req, route)
        return None

    # ------------------------------------------------------------------------------------------ revoke

    def _revoke(self, req: Request) -> Response:
        # Revoking an access token also revokes its refresh token, and the other way round.
        token = req.form().get("token") or ""
        if self.revoke_token(token, via="revoke") is None:
            return json_response(400, {"error": "invalid_token", "error_description": "Token expired or revoked"})
        return json_response(200, {})

    # ------------------------------------------------------------------------------------- data points

    def _user_for_path(self, req: Request, scopes_any=None):
        user, grant = self.authorize_bearer(req, scopes_any)
        if req.params["user"] not in ("me", str(user.id)):
            raise ApiError(google_error(403, "PERMISSION_DENIED", "The caller does not have permission"))
        return user, grant

    def _identity(self, req: Request) -> Response:
        user, _ = self._user_for_path(req)
        return json_response(200, {"name": f"users/{req.params['user']}/identity",
                                   "legacyUserId": self.legacy_user_id(user.id), "healthUserId": str(user.id)})

    def _data_type(self, req: Request) -> str:
        dt = req.params["data_type"]
        if dt not in DATA_TYPES:
            raise ApiError(google_error(
                400, "INVALID_ARGUMENT", f"Invalid data type ID referenced in the parent data type collection: {dt}",
                [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "INVALID_PARENT_DATA_TYPE_COLLECTION",
                  "domain": "health.googleapis.com", "metadata": {"dataType": dt}}]))
        return dt

    def scopes_for(self, data_type: str) -> list[str]:
        area = DATA_TYPES[data_type][0]
        return [f"{SCOPE_PREFIX}{area}", f"{SCOPE_PREFIX}{area}.readonly"]

    def _parse_filter(self, data_type: str, text: str | None):
        """AIP-160 as the list method supports it: clauses `member >= "x"` / `member < "x"` joined by AND.
        Returns [(physical?, op, seconds)]; civil literals compare with civil (local) time."""
        if not text:
            return []
        kind = DATA_TYPES[data_type][1]
        clauses = []
        for part in re.split(r"\s+AND\s+", text.strip()):
            m = _FILTER.match(part)
            if not m or m.group(1) != data_type.replace("-", "_") \
                    or (kind == "sample") != m.group(2).startswith("sample_time"):
                raise ApiError(google_error(400, "INVALID_ARGUMENT", f"Invalid filter: {part.strip()}"))
            physical = m.group(2) in ("interval.start_time", "sample_time.physical_time")
            literal = m.group(4)
            try:
                if physical:
                    if not re.search(r"(Z|[+-]\d\d:\d\d)$", literal):
                        raise ValueError
                    seconds = parse_iso(literal)
                else:
                    if not re.fullmatch(r"\d{4}-\d\d-\d\d(T\d\d:\d\d:\d\d)?", literal):
                        raise ValueError
                    seconds = parse_iso(literal if "T" in literal else literal + "T00:00:00")
            except ValueError:
                raise ApiError(google_error(400, "INVALID_ARGUMENT", f"Invalid timestamp in filter: {literal}"))
            clauses.append((physical, m.group(3), seconds))
        return clauses

    def point_json(self, user, data_type: str, rec: dict) -> dict:
        off = user.utc_offset_s
        device = {"formFactor": "SCALE", "manufacturer": "Withings", "displayName": "Body+"} if data_type == "weight" \
            else {"formFactor": "WATCH", "manufacturer": "Google", "displayName": "Pixel Watch 3"}
        point: dict = {}
        if data_type in IDENTIFIABLE:
            point["name"] = f"users/{user.id}/dataTypes/{data_type}/dataPoints/{rec['id']}"
        point["dataSource"] = {"recordingMethod": "PASSIVELY_MEASURED", "device": device, "platform": "FITBIT"}
        v = rec["value"]
        if data_type == "heart-rate":
            point["heartRate"] = {"sampleTime": sample_time(rec["t"], off), "beatsPerMinute": str(v)}
        elif data_type == "steps":
            point["steps"] = {"interval": interval(rec["t"], rec["end"], off), "count": str(v)}
        elif data_type == "heart-rate-variability":
            point["heartRateVariability"] = {"sampleTime": sample_time(rec["t"], off),
                                             "rootMeanSquareOfSuccessiveDifferencesMilliseconds": v}
        elif data_type == "oxygen-saturation":
            point["oxygenSaturation"] = {"sampleTime": sample_time(rec["t"], off), "percentage": v}
        elif data_type == "weight":
            point["weight"] = {"sampleTime": sample_time(rec["t"], off), "weightGrams": v}
        return point

    def _list_points(self, req: Request) -> Response:
        data_type = self._data_type(req)
        user, _ = self._user_for_path(req, self.scopes_for(data_type))
        clauses = self._parse_filter(data_type, req.q("filter"))
        big = data_type in ("exercise", "sleep")
        try:
            size = int(req.q("pageSize") or (25 if big else 1440))
        except ValueError:
            return google_error(400, "INVALID_ARGUMENT", "Invalid pageSize")
        size = max(1, min(size, 25 if big else 10000))
        fingerprint = hashlib.sha256(f"{user.id}|{data_type}|{req.q('filter') or ''}".encode()).hexdigest()[:16]
        offset = 0
        if req.q("pageToken"):
            try:
                tok = json.loads(base64.urlsafe_b64decode(req.q("pageToken").encode()))
                if tok["f"] != fingerprint:
                    raise ValueError
                offset = int(tok["o"])
            except (ValueError, KeyError, TypeError):
                return google_error(400, "INVALID_ARGUMENT", "Invalid page token")
        off = user.utc_offset_s
        with self.lock:
            recs = list(self.points.get((str(user.id), data_type), ()))

        def keep(rec: dict) -> bool:
            for physical, op, seconds in clauses:
                t = rec["t"] if physical else rec["t"] + off
                if (op == ">=" and not t >= seconds) or (op == "<" and not t < seconds):
                    return False
            return True

        matched = [r for r in recs if keep(r)]
        page = matched[offset:offset + size]
        body: dict = {"dataPoints": [self.point_json(user, data_type, r) for r in page]}
        if offset + size < len(matched):
            body["nextPageToken"] = base64.urlsafe_b64encode(
                json.dumps({"o": offset + size, "f": fingerprint}).encode()).decode()
        return json_response(200, body)

    def _get_point(self, req: Request) -> Response:
        data_type = self._data_type(req)
        user, _ = self._user_for_path(req, self.scopes_for(data_type))
        with self.lock:
            rec = next((r for r in self.points.get((str(user.id), data_type), ()) if r["id"] == req.params["point"]), None)
        if rec is None or data_type not in IDENTIFIABLE:
            return self.not_found(req)
        return json_response(200, self.point_json(user, data_type, rec))

    def create_data_points(self, user: Any, type: str = "heart-rate", start: float | None = None,
                           seconds: int = 3600, interval_s: int | None = None, base: float | None = None,
                           values: list | None = None, notify: bool = False) -> dict:
        """Creates data points of `type` (heart-rate, steps, heart-rate-variability, oxygen-saturation,
        weight) every `interval_s` over `seconds` from `start` (steps: one interval point per step),
        generated from the seed around `base`, or exactly `values`. Returns {"dataPoints": [...as the
        list endpoint shows them], "webhook": ...}."""
        if type not in GENERATED:
            raise ApiError(json_response(400, {"error": f"type must be one of {sorted(GENERATED)}"}))
        owner = self.get_user(user)
        step, level = GENERATED[type]
        step = int(interval_s or step)
        base = level if base is None else base
        start = int(self.now() - seconds - 600 if start is None else start)
        count = len(values) if values is not None else max(1, int(seconds) // step)
        rng = seeded_rng(self.seed, "googlehealth", owner.id, type, start)
        made = []
        with self.lock:
            series = self.points.setdefault((str(owner.id), type), [])
            for i in range(count):
                t = start + i * step
                if values is not None:
                    v = values[i]
                elif type == "heart-rate":
                    v = int(round(base + 8 * math.sin(2 * math.pi * i * step / 1800) + rng.gauss(0, 2)))
                elif type == "steps":
                    v = max(0, int(round(base + 30 * math.sin(2 * math.pi * i / 30) + rng.gauss(0, 10))))
                elif type == "heart-rate-variability":
                    v = round(max(5.0, base + rng.gauss(0, 6)), 1)
                elif type == "oxygen-saturation":
                    v = round(min(100.0, base + rng.gauss(0, 1)), 1)
                else:
                    v = round(base + rng.gauss(0, 150), 1)
                self._next_point += 1
                rec = {"id": f"{self._next_point:012d}", "t": t, "end": t + step if type == "steps" else None,
                       "value": v}
                bisect.insort(series, rec, key=lambda r: r["t"])
                made.append(rec)
        out = {"dataPoints": [self.point_json(owner, type, r) for r in made]}
        if notify:
            end = made[-1]["end"] or made[-1]["t"]
            out["webhook"] = self.notify(user=owner.id, data_type=type, start=made[0]["t"], end=end)
        return out

    def _ctl_create_points(self, req: Request) -> Response:
        b = req.json()
        if "user" not in b:
            return json_response(400, {"error": "user is required"})
        kw = {k: b[k] for k in ("type", "start", "seconds", "interval_s", "base", "values", "notify") if k in b}
        return json_response(201, self.create_data_points(b["user"], **kw))

    # ------------------------------------------------------------------------------------- subscribers

    def _project_auth(self, req: Request) -> None:
        token = req.bearer()
        expected = self.opt("project_token")
        if token is None or (expected is not None and token != expected):
            raise ApiError(self.unauthorized(req, "project credentials"))

    def _operation(self, resource: dict, type_name: str) -> dict:
        self._next_operation += 1
        return {"name": f"operations/emulator-{self._next_operation}", "done": True,
                "response": {"@type": f"type.googleapis.com/google.devicesandservices.health.v4.{type_name}",
                             **resource}}

    def _subscriber_json(self, sub: dict) -> dict:
        return {"name": sub["name"], "endpointUri": sub["endpointUri"], "createTime": sub["createTime"],
                "updateTime": sub["updateTime"], "subscriberConfigs": sub["subscriberConfigs"],
                "endpointAuthorization": {"secretSet": True}, "state": "ACTIVE"}

    def _validate_subscriber(self, body: dict) -> tuple[str, list, str]:
        uri = body.get("endpointUri") or ""
        secret = (body.get("endpointAuthorization") or {}).get("secret") or ""
        configs = body.get("subscriberConfigs") or []
        if not uri.startswith("https://" if self.opt("require_https_endpoint") else ("http://", "https://")):
            raise ApiError(google_error(400, "INVALID_ARGUMENT", "endpointUri must be a valid HTTPS URL"))
        if not secret:
            raise ApiError(google_error(400, "INVALID_ARGUMENT", "endpointAuthorization.secret is required"))
        for c in configs:
            bad = [t for t in c.get("dataTypes", []) if t not in WEBHOOK_TYPES]
            if bad or c.get("subscriptionCreatePolicy") not in ("AUTOMATIC", "MANUAL"):
                raise ApiError(google_error(400, "INVALID_ARGUMENT", f"Invalid subscriber config: {c}"))
        return uri, configs, secret

    def _verify_endpoint(self, uri: str, secret: str) -> str | None:
        """The two verification POSTs; returns what failed, or None."""
        body = b'{"type": "verification"}'
        for with_auth, accepted in ((True, (201,)), (False, (401, 403))):
            headers = {"Content-Type": "application/json", "User-Agent": "Google-Health-API-Webhooks",
                       self.opt("signature_header"): sign(self.private_key, self.key_id, body)}
            if with_auth:
                headers["Authorization"] = secret
            try:
                status, _, _ = http_request("POST", uri, body, headers, timeout=float(self.opt("webhook_timeout_s")),
                                            verify_tls=bool(self.opt("webhook_verify_tls")))
            except OSError as e:
                return f"endpoint unreachable: {e}"
            if status not in accepted:
                return (f"verification {'with' if with_auth else 'without'} Authorization answered {status}, "
                        f"expected {' or '.join(map(str, accepted))}")
        return None

    def _create_subscriber(self, req: Request) -> Response:
        self._project_auth(req)
        body = req.json()
        uri, configs, secret = self._validate_subscriber(body)
        sub_id = req.q("subscriberId") or f"{secrets.token_hex(4)}-{secrets.token_hex(2)}-{secrets.token_hex(2)}"
        if not re.fullmatch(r"[a-z0-9-]{4,36}", sub_id):
            return google_error(400, "INVALID_ARGUMENT", "subscriberId must be 4-36 characters of [a-z0-9-]")
        name = f"projects/{req.params['project']}/subscribers/{sub_id}"
        with self.lock:
            if name in self.subscribers:
                return google_error(409, "ALREADY_EXISTS", f"Subscriber {name} already exists")
        failure = self._verify_endpoint(uri, secret)
        if failure is not None:
            return google_error(400, "FAILED_PRECONDITION", f"Endpoint verification failed: {failure}")
        with self.lock:
            sub = self._add_subscriber(name, uri, configs, secret)
            return json_response(200, self._operation(self._subscriber_json(sub), "Subscriber"))

    def _add_subscriber(self, name: str, uri: str, configs: list, secret: str) -> dict:
        now = iso_z(self.now())
        sub = {"name": name, "endpointUri": uri, "subscriberConfigs": configs, "secret": secret,
               "createTime": now, "updateTime": now, "subscriptions": {}}
        self.subscribers[name] = sub
        return sub

    def preprovision_webhook(self, url: str) -> None:
        self._add_subscriber("projects/emulator-project/subscribers/preprovisioned", url,
                             [{"dataTypes": list(WEBHOOK_TYPES), "subscriptionCreatePolicy": "AUTOMATIC"}],
                             self.opt("webhook_authorization"))

    def _subscriber(self, req: Request) -> dict:
        self._project_auth(req)
        name = f"projects/{req.params['project']}/subscribers/{req.params['subscriber']}"
        with self.lock:
            sub = self.subscribers.get(name)
        if sub is None:
            raise ApiError(google_error(404, "NOT_FOUND", f"Subscriber {name} not found"))
        return sub

    def _list_subscribers(self, req: Request) -> Response:
        self._project_auth(req)
        prefix = f"projects/{req.params['project']}/subscribers/"
        with self.lock:
            subs = [self._subscriber_json(s) for n, s in self.subscribers.items() if n.startswith(prefix)]
        return json_response(200, {"subscribers": subs})

    def _get_subscriber(self, req: Request) -> Response:
        return json_response(200, self._subscriber_json(self._subscriber(req)))

    def _patch_subscriber(self, req: Request) -> Response:
        sub = self._subscriber(req)
        body = req.json()
        merged = {"endpointUri": body.get("endpointUri", sub["endpointUri"]),
                  "subscriberConfigs": body.get("subscriberConfigs", sub["subscriberConfigs"]),
                  "endpointAuthorization": body.get("endpointAuthorization") or {"secret": sub["secret"]}}
        uri, configs, secret = self._validate_subscriber(merged)
        if uri != sub["endpointUri"] or secret != sub["secret"]:
            failure = self._verify_endpoint(uri, secret)
            if failure is not None:
                return google_error(400, "FAILED_PRECONDITION", f"Endpoint verification failed: {failure}")
        with self.lock:
            sub.update(endpointUri=uri, subscriberConfigs=configs, secret=secret, updateTime=iso_z(self.now()))
            return json_response(200, self._operation(self._subscriber_json(sub), "Subscriber"))

    def _delete_subscriber(self, req: Request) -> Response:
        sub = self._subscriber(req)
        with self.lock:
            self.subscribers.pop(sub["name"], None)
            self._next_operation += 1
            return json_response(200, {"name": f"operations/emulator-{self._next_operation}", "done": True,
                                       "response": {"@type": "type.googleapis.com/google.protobuf.Empty"}})

    def _create_subscription(self, req: Request) -> Response:
        sub = self._subscriber(req)
        body = req.json()
        user_ref = body.get("user") or ""
        types = body.get("dataTypes") or []
        allowed = {t for c in sub["subscriberConfigs"] for t in c.get("dataTypes", [])}
        if not user_ref.startswith("users/") or any(t not in allowed for t in types):
            return google_error(400, "INVALID_ARGUMENT", "user must be users/{healthUserId} and dataTypes those of "
                                                         "the subscriber")
        sid = req.q("subscriptionId") or secrets.token_hex(8)
        name = f"{sub['name']}/subscriptions/{sid}"
        with self.lock:
            sub["subscriptions"][name] = {"name": name, "dataTypes": types, "user": user_ref}
            return json_response(200, sub["subscriptions"][name])

    def _list_subscriptions(self, req: Request) -> Response:
        sub = self._subscriber(req)
        with self.lock:
            return json_response(200, {"subscriptions": list(sub["subscriptions"].values())})

    def _delete_subscription(self, req: Request) -> Response:
        sub = self._subscriber(req)
        name = f"{sub['name']}/subscriptions/{req.params['subscription']}"
        with self.lock:
            if sub["subscriptions"].pop(name, None) is None:
                return google_error(404, "NOT_FOUND", f"Subscription {name} not found")
        return json_response(200, {})

    def subscriptions_state(self) -> list:
        return [{**s, "subscriptions": list(s["subscriptions"].values())} for s in self.subscribers.values()]

    # ---------------------------------------------------------------------------------------- webhooks

    def _consented(self, user_id: str, data_type: str) -> bool:
        wanted = set(self.scopes_for(data_type))
        return any(not g.revoked and wanted & set(g.scopes) for g in self.user_grants.get(user_id, ()))

    def webhook_event(self, user: Any = None, data_type: str = "steps", operation: str = "UPSERT",
                      start: float | None = None, end: float | None = None, target: str | None = None,
                      authorization: str | None = None) -> list:
        """A notification {"data": {version, clientProvidedSubscriptionName, healthUserId, operation,
        dataType, intervals}} to every subscriber with a config for the data type whose user consented
        (AUTOMATIC) or has a subscription (MANUAL); or only to `target` (with `authorization`)."""
        owner = self.get_user(user if user is not None else self.default_user_id)
        t1 = int(end if end is not None else self.now())
        t0 = int(start if start is not None else t1 - 300)
        off = owner.utc_offset_s
        with self.lock:
            if target is not None:
                targets = [(target, authorization or self.opt("webhook_authorization"), f"manual-{owner.id}")]
            else:
                targets = [t for sub in self.subscribers.values() for t in self._targets(sub, owner, data_type)]
        sends = []
        for dest, secret, sub_name in targets:
            body = compact({"data": {
                "version": "1", "clientProvidedSubscriptionName": sub_name, "healthUserId": str(owner.id),
                "operation": operation, "dataType": data_type,
                "intervals": [{"physicalTimeInterval": {"startTime": iso_z(t0), "endTime": iso_z(t1)},
                               "civilDateTimeInterval": {"startDateTime": civil(t0, off), "endDateTime": civil(t1, off)},
                               "civilIso8601TimeInterval": {"startTime": civil_iso(t0, off),
                                                            "endTime": civil_iso(t1, off)}}]}})
            sends.append(lambda dest=dest, secret=secret, body=body: self._post(dest, secret, body, data_type))
        return sends

    def _targets(self, sub: dict, owner, data_type: str) -> list[tuple[str, str, str]]:
        """(endpoint, Authorization, subscription name) of `sub` for the user's `data_type`: with the
        AUTOMATIC policy when the user granted the scope, with MANUAL per subscription of the user."""
        cfg = next((c for c in sub["subscriberConfigs"] if data_type in c.get("dataTypes", [])), None)
        if cfg is None:
            return []
        if cfg["subscriptionCreatePolicy"] == "AUTOMATIC":
            if not self._consented(str(owner.id), data_type):
                return []
            return [(sub["endpointUri"], sub["secret"], f"{sub['name']}/automatic/{owner.id}")]
        return [(sub["endpointUri"], sub["secret"], s["name"].rsplit("/", 1)[-1]) for s in sub["subscriptions"].values()
                if s["user"] == f"users/{owner.id}" and data_type in s["dataTypes"]]

    def _post(self, url: str, secret: str, body: bytes, label: str) -> dict:
        headers = {"Authorization": secret, "User-Agent": "Google-Health-API-Webhooks",
                   self.opt("signature_header"): sign(self.private_key, self.key_id, body)}
        return self.deliver(url, body, headers, label, success=lambda s: 200 <= s < 300)

    def _keyset(self, req: Request) -> Response:
        return json_response(200, tink_public_keyset(self.public_key, self.key_id))

    def _ctl_public_key(self, req: Request) -> Response:
        return Response(200, self.public_key_pem.encode(), [("Content-Type", "application/x-pem-file")])
