"""Self-tests of the vendor emulators (Tests/e2e/emulators): OAuth flows, refresh rotation, faults,
webhook handshakes and signatures (vectors B3/B4/B6 of the shared vendor notes), rate limits.
They use only the emulators, a tiny local webhook receiver and requests; no daemon."""

from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from cryptography.hazmat.primitives import serialization

from emulators import start_emulator
from emulators import googlehealth, oura, polar, strava
from pgtest import http_session

CLIENT_ID, CLIENT_SECRET = "4242", "emulator-test-secret"
REDIRECT = "http://127.0.0.1:9/callback?src=e2e"
SCOPES = {"strava": "read,activity:read_all",
          "googlehealth": f"{googlehealth.SCOPE_PREFIX}health_metrics_and_measurements.readonly "
                          f"{googlehealth.SCOPE_PREFIX}activity_and_fitness.readonly",
          "polar": "accesslink.read_all", "oura": "personal heartrate daily"}


HTTP = http_session()


@pytest.fixture
def emu_factory():
    made = []

    def make(vendor, **kw):
        emu = start_emulator(vendor, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                             **{"webhook_retry_delay_s": 0.01, **kw})
        made.append(emu)
        return emu

    yield make
    for emu in made:
        emu.stop()


class Hook:
    """A local HTTP endpoint standing in for pulsegate's webhook receiver. `respond(req)` returns
    (status, body) where body is bytes or a JSON-able object; every request is recorded."""

    def __init__(self, respond=None):
        self.requests: list[dict] = []
        self.respond = respond or (lambda req: (200, b""))
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _any(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                parts = urlsplit(self.path)
                req = {"method": self.command, "path": parts.path, "query": {k: v[0] for k, v in parse_qs(parts.query).items()},
                       "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
                hook.requests.append(req)
                status, out = hook.respond(req)
                out = out if isinstance(out, bytes) else json.dumps(out).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(out)))
                    self.end_headers()
                    self.wfile.write(out)
                except OSError:
                    pass    # the emulator stopped waiting (a timeout test)

            do_GET = do_POST = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def posts(self) -> list[dict]:
        return [r for r in self.requests if r["method"] == "POST"]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook_factory():
    made = []

    def make(respond=None):
        h = Hook(respond)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


def authorize_url(emu, scope=None, state="st-1", **extra) -> str:
    params = {"client_id": CLIENT_ID, "redirect_uri": REDIRECT, "response_type": "code",
              "scope": SCOPES[emu.vendor] if scope is None else scope, "state": state, **extra}
    if emu.vendor == "googlehealth":
        params.setdefault("access_type", "offline")
    return emu.url(emu.authorize_path) + "?" + urlencode(params)


def query(location: str) -> dict:
    assert location.startswith("http://127.0.0.1:9/callback?src=e2e&"), location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def token_request(emu, form: dict) -> requests.Response:
    """A token request with the vendor's client authentication."""
    form = dict(form)
    auth = None
    if emu.vendor == "polar":
        auth = (CLIENT_ID, CLIENT_SECRET)
    else:
        form.update(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    return HTTP.post(emu.url(emu.token_path), data=form, auth=auth, timeout=10)


def link(emu, user=None, scope=None, **extra) -> dict:
    """consent -> code -> tokens; returns the token answer."""
    verifier = extra.pop("code_verifier", None)
    q = query(emu.consent(authorize_url(emu, scope, **extra), user=user))
    form = {"grant_type": "authorization_code", "code": q["code"], "redirect_uri": REDIRECT}
    if verifier is not None:
        form["code_verifier"] = verifier
    r = token_request(emu, form)
    assert r.status_code == 200, r.text
    return r.json()


def refresh(emu, token: str) -> requests.Response:
    return token_request(emu, {"grant_type": "refresh_token", "refresh_token": token})


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def data_call(emu, access_token: str) -> requests.Response:
    """One authenticated data request per vendor."""
    path = {"strava": "/api/v3/athlete", "googlehealth": "/v4/users/me/identity",
            "polar": "/v3/exercises", "oura": "/v2/usercollection/personal_info"}[emu.vendor]
    return HTTP.get(emu.url(path), headers=bearer(access_token), timeout=10)


VENDORS = ["strava", "googlehealth", "polar", "oura"]


# ---------------------------------------------------------------------------------------------- OAuth


@pytest.mark.parametrize("vendor", VENDORS)
def test_consent_code_token(emu_factory, vendor):
    emu = emu_factory(vendor)
    page = HTTP.get(authorize_url(emu), timeout=10)
    assert page.status_code == 200 and "<form" in page.text and 'name="user"' in page.text
    q = query(emu.consent(authorize_url(emu)))
    assert q["state"] == "st-1" and q["code"]
    r = token_request(emu, {"grant_type": "authorization_code", "code": q["code"], "redirect_uri": REDIRECT})
    assert r.status_code == 200, r.text
    tok = r.json()
    expected = {"strava": {"token_type", "expires_at", "expires_in", "refresh_token", "access_token", "athlete"},
                "googlehealth": {"access_token", "expires_in", "refresh_token", "scope", "token_type"},
                "polar": {"access_token", "token_type", "expires_in", "x_user_id"},
                "oura": {"access_token", "refresh_token", "expires_in", "token_type"}}[vendor]
    assert set(tok) == expected
    if vendor == "strava":
        assert tok["athlete"]["id"] == 134815 and q["scope"] == "read,activity:read_all"
        assert tok["expires_in"] == 21600
    if vendor == "polar":
        assert tok["x_user_id"] == 475 and tok["expires_in"] > 300 * 86400
        assert HTTP.post(emu.url("/v3/users"), json={"member-id": "m-1"}, headers=bearer(tok["access_token"]),
                         timeout=10).status_code == 200
    assert data_call(emu, tok["access_token"]).status_code == 200
    # the code is single-use
    again = token_request(emu, {"grant_type": "authorization_code", "code": q["code"], "redirect_uri": REDIRECT})
    assert again.status_code == 400
    assert (again.json()["errors"][0]["resource"] == "AuthorizationCode" if vendor == "strava"
            else again.json()["error"] == "invalid_grant")
    # ... and reusing it revoked what it issued (RFC 6749 §4.1.2)
    assert data_call(emu, tok["access_token"]).status_code == 401


def test_deny_and_untick_scopes(emu_factory):
    emu = emu_factory("strava")
    assert query(emu.consent(authorize_url(emu), allow=False)) == {"src": "e2e", "error": "access_denied",
                                                                   "state": "st-1"}
    q = query(emu.consent(authorize_url(emu), granted_scope=["read"]))
    assert q["scope"] == "read"
    tok = token_request(emu, {"grant_type": "authorization_code", "code": q["code"]}).json()
    act = emu.create_activity(134815, seconds=10)
    r = HTTP.get(emu.url(f"/api/v3/activities/{act['id']}"), headers=bearer(tok["access_token"]), timeout=10)
    assert r.status_code == 401
    assert r.json()["errors"][0] == {"resource": "AccessToken", "field": "activity:read_permission", "code": "missing"}


def test_authorize_refusals(emu_factory):
    emu = emu_factory("oura")
    assert HTTP.get(authorize_url(emu).replace(CLIENT_ID, "nope"), timeout=10).status_code == 400
    r = HTTP.get(authorize_url(emu, scope="personal bogus"), allow_redirects=False, timeout=10)
    assert r.status_code == 302 and query(r.headers["Location"])["error"] == "invalid_scope"


def test_google_pkce_and_offline(emu_factory):
    emu = emu_factory("googlehealth")
    verifier, challenge = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    ok = link(emu, code_challenge=challenge, code_challenge_method="S256", code_verifier=verifier)
    assert ok["refresh_token"].startswith("1//") and ok["scope"] == SCOPES["googlehealth"]
    q = query(emu.consent(authorize_url(emu, code_challenge=challenge, code_challenge_method="S256")))
    bad = token_request(emu, {"grant_type": "authorization_code", "code": q["code"], "redirect_uri": REDIRECT,
                              "code_verifier": verifier[:-1] + "Y"})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_grant"
    # without access_type=offline Google issues no refresh token
    q = query(emu.consent(authorize_url(emu, access_type="online")))
    r = token_request(emu, {"grant_type": "authorization_code", "code": q["code"], "redirect_uri": REDIRECT})
    assert "refresh_token" not in r.json()
    # a redirect_uri that differs from the authorize request's is refused
    q = query(emu.consent(authorize_url(emu)))
    r = token_request(emu, {"grant_type": "authorization_code", "code": q["code"], "redirect_uri": REDIRECT + "x"})
    assert r.status_code == 400 and r.json()["error"] == "redirect_uri_mismatch"


def test_invalid_client_shapes(emu_factory):
    s = emu_factory("strava")
    r = HTTP.post(s.url("/oauth/token"), data={"client_id": CLIENT_ID, "client_secret": "wrong",
                                               "grant_type": "refresh_token", "refresh_token": "x"}, timeout=10)
    assert r.status_code == 400 and r.json() == {"message": "Bad Request", "errors": [
        {"resource": "Application", "field": "client_secret", "code": "invalid"}]}
    g = emu_factory("googlehealth")
    form = {"grant_type": "refresh_token", "refresh_token": "x"}
    basic = HTTP.post(g.url("/token"), data=form, auth=(CLIENT_ID, "wrong"), timeout=10)
    post = HTTP.post(g.url("/token"), data={**form, "client_id": CLIENT_ID, "client_secret": "wrong"}, timeout=10)
    for r in (basic, post):
        assert r.status_code == 401 and r.json() == {"error": "invalid_client", "error_description": "Unauthorized"}
    p = emu_factory("polar")
    # Polar wants HTTP Basic: credentials in the body are not client authentication
    r = HTTP.post(p.url("/v2/oauth2/token"), data={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                                                   "grant_type": "authorization_code", "code": "x"}, timeout=10)
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    o = emu_factory("oura")
    r = HTTP.post(o.url("/oauth/token"), data={"client_id": "nope", "client_secret": CLIENT_SECRET,
                                               "grant_type": "refresh_token", "refresh_token": "x"}, timeout=10)
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


# --------------------------------------------------------------------------------- refresh rotation


def test_rotation_previous_valid_until_used(emu_factory):
    emu = emu_factory("oura")     # rotating, previous token valid until the new pair is used
    t1 = link(emu)
    r2 = refresh(emu, t1["refresh_token"]).json()
    assert r2["refresh_token"] != t1["refresh_token"]
    # the client lost that answer: the old token still works, and the unseen successor dies
    r3 = refresh(emu, t1["refresh_token"]).json()
    assert refresh(emu, r2["refresh_token"]).status_code == 400
    assert data_call(emu, r3["access_token"]).status_code == 200     # the new pair is used ...
    dead = refresh(emu, t1["refresh_token"])                          # ... so the old token is dead
    assert dead.status_code == 400 and dead.json()["error"] == "invalid_grant"
    st = emu.state()
    assert st["refresh_retries"] == {"user-123": 1} and st["refresh_reuse"] == {"user-123": 2}
    assert st["locked_out"] == []
    assert refresh(emu, r3["refresh_token"]).status_code == 200      # no lockout in this mode


def test_strict_rotation_reuse_locks_out(emu_factory):
    emu = emu_factory("strava", previous_refresh_valid_until_used=False)
    t1 = link(emu)
    r2 = refresh(emu, t1["refresh_token"]).json()
    assert "athlete" not in r2
    reuse = refresh(emu, t1["refresh_token"])
    assert reuse.status_code == 400 and reuse.json()["errors"][0] == {
        "resource": "RefreshToken", "field": "refresh_token", "code": "invalid"}
    st = emu.state()
    assert st["locked_out"] == [134815] and st["refresh_reuse"] == {"134815": 1}
    assert refresh(emu, r2["refresh_token"]).status_code == 400
    assert data_call(emu, r2["access_token"]).status_code == 401
    link(emu)     # consent again ends the lockout
    assert emu.state()["locked_out"] == []


def test_google_does_not_rotate_and_polar_has_no_refresh(emu_factory):
    g = emu_factory("googlehealth")
    t = link(g)
    for _ in range(2):
        r = refresh(g, t["refresh_token"])
        assert r.status_code == 200 and "refresh_token" not in r.json() and r.json()["expires_in"] == 3599
    p = emu_factory("polar")
    r = refresh(p, "anything")
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"


def test_access_token_expiry(emu_factory):
    emu = emu_factory("strava")
    t = link(emu)
    assert data_call(emu, t["access_token"]).status_code == 200
    emu.advance_clock(21600 + 1)
    r = data_call(emu, t["access_token"])
    assert r.status_code == 401 and r.json()["message"] == "Authorization Error"
    assert data_call(emu, refresh(emu, t["refresh_token"]).json()["access_token"]).status_code == 200


# ------------------------------------------------------------------------------------------- faults


def test_token_faults(emu_factory):
    emu = emu_factory("oura", refresh_fail_rate=1.0)
    t = link(emu)
    seen = set()
    for _ in range(12):
        try:
            seen.add(refresh(emu, t["refresh_token"]).status_code)
        except requests.ConnectionError:
            seen.add("drop")
    assert seen == {500, 503, "drop"}
    emu.configure(refresh_fail_rate=0.0)
    assert refresh(emu, t["refresh_token"]).status_code == 200     # the faults did not rotate
    # held answer: rotated before the client gave up; the retry with the old token is accepted
    t2 = link(emu, user="user-2")
    emu.configure(hold_token_response_s=1.0)
    with pytest.raises(requests.Timeout):
        HTTP.post(emu.url("/oauth/token"), data={"grant_type": "refresh_token", "refresh_token": t2["refresh_token"],
                                                 "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}, timeout=0.3)
    emu.configure(hold_token_response_s=0.0)
    assert refresh(emu, t2["refresh_token"]).status_code == 200
    assert emu.state()["refresh_retries"] == {"user-2": 1}
    emu.configure(down=True)
    assert data_call(emu, t2["access_token"]).status_code == 500
    assert HTTP.get(emu.url("/_emulator/state"), timeout=10).status_code == 200   # control never faults


# ------------------------------------------------------------------------------------------- signatures


def test_signature_vectors():
    b3 = (b'{"event_type":"create","data_type":"daily_sleep","object_id":"8f9a5221-639e-4a85-81cb-4065ef23f979",'
          b'"event_time":"2024-01-01T08:00:00+00:00","user_id":"user-123"}')
    assert oura.sign("test-secret", "1704096000", b3) == "9827C4908B9859E005BB861CCFE69B55B8E842580A0AF48E2A323D51C911D13D"
    b4 = (b'{"event":"EXERCISE","user_id":475,"entity_id":"aQlC83","timestamp":"2018-05-15T14:22:24Z",'
          b'"url":"https://www.polaraccesslink.com/v3/exercises/aQlC83"}')
    assert polar.sign("test-secret", b4) == "0ee5545baba7b32d8b0e210ff77be60d12108ac039f3c145804720b026f01a45"
    b6 = (b'{"aspect_type":"update","event_time":1516126040,"object_id":1360128428,"object_type":"activity",'
          b'"owner_id":134815,"subscription_id":120475,"updates":{"title":"Messy"}}')
    assert strava.sign("test-secret", b6, 1516126041) == \
        "t=1516126041,v1=287df32df4647b7bc679063743c9fbb2ab20c59920b0fc43fb30ffc3d84e7525"
    # B8: the raw bytes are signed, so re-serialized JSON must not verify
    respaced = json.dumps(json.loads(b4)).encode()
    assert polar.sign("test-secret", respaced) != polar.sign("test-secret", b4)
    key = googlehealth.private_key_for_seed(7)
    kid = googlehealth.key_id_for_seed(7)
    sig = googlehealth.sign(key, kid, b6)
    raw = base64.b64decode(sig)
    assert raw[0] == 1 and int.from_bytes(raw[1:5], "big") == kid and raw[5] == 0x30      # Tink prefix + DER
    assert googlehealth.verify(key.public_key(), b6, sig, kid)
    assert not googlehealth.verify(key.public_key(), json.dumps(json.loads(b6)).encode(), sig, kid)
    keyset = googlehealth.tink_public_keyset(key.public_key(), kid)
    value = base64.b64decode(keyset["key"][0]["keyData"]["value"])
    nums = key.public_key().public_numbers()
    assert value[:8] == bytes([0x12, 6, 8, 3, 0x10, 2, 0x18, 2]) and nums.x.to_bytes(33, "big") in value


# ------------------------------------------------------------------------------------------- webhooks


def test_strava_subscription_and_events(emu_factory, hook_factory):
    emu = emu_factory("strava", sign=True, webhook_timeout_s=0.5)
    answers = iter([500, 200])

    def respond(req):
        if req["method"] == "GET":
            assert req["query"]["hub.mode"] == "subscribe" and req["query"]["hub.verify_token"] == "vt"
            return 200, {"hub.challenge": req["query"]["hub.challenge"]}
        return next(answers, 200), b""

    hook = hook_factory(respond)
    form = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "callback_url": hook.url, "verify_token": "vt"}
    r = HTTP.post(emu.url("/api/v3/push_subscriptions"), data=form, timeout=10)
    assert r.status_code == 201 and r.json() == {"id": 120475}
    dup = HTTP.post(emu.url("/api/v3/push_subscriptions"), data=form, timeout=10)
    assert dup.status_code == 400 and dup.json()["errors"][0]["code"] == "already exists"
    listed = HTTP.get(emu.url("/api/v3/push_subscriptions"), params=form, timeout=10).json()
    assert [s["callback_url"] for s in listed] == [hook.url]
    act = emu.create_activity(134815, seconds=20, notify=True)
    assert act["webhook"]["attempts"] == 2 and act["webhook"]["status"] == 200     # retried after the 500
    post = hook.posts()[-1]
    event = json.loads(post["body"])
    assert event == {"aspect_type": "create", "event_time": event["event_time"], "object_id": act["id"],
                     "object_type": "activity", "owner_id": 134815, "subscription_id": 120475, "updates": {}}
    t = int(post["headers"]["x-strava-signature"].split(",")[0][2:])
    assert post["headers"]["x-strava-signature"] == strava.sign(CLIENT_SECRET, post["body"], t)
    # an answer slower than the timeout counts as a failure: 3 attempts in all
    hook.respond = lambda req: (time.sleep(0.7), (200, b""))[1]
    res = emu.send_webhook(object_type="athlete", object_id=134815, aspect_type="update", owner_id=134815,
                           updates={"authorized": "false"})
    assert res["attempts"] == 3 and res["delivered"] is False
    assert HTTP.delete(emu.url("/api/v3/push_subscriptions/120475"), params=form, timeout=10).status_code == 204


def test_strava_handshake_must_echo(emu_factory, hook_factory):
    emu = emu_factory("strava")
    hook = hook_factory(lambda req: (200, {"hub.challenge": "wrong"}))
    r = HTTP.post(emu.url("/api/v3/push_subscriptions"), timeout=10, data={
        "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "callback_url": hook.url, "verify_token": "vt"})
    assert r.status_code == 400 and emu.state()["subscriptions"] == []


def test_strava_deauthorize_pushes_event(emu_factory, hook_factory):
    hook = hook_factory()
    emu = emu_factory("strava", webhook_url=hook.url)
    t = link(emu)
    r = HTTP.post(emu.url("/oauth/deauthorize"), data={"access_token": t["access_token"]}, timeout=10)
    assert r.status_code == 200 and r.json() == {"access_token": t["access_token"]}
    assert data_call(emu, t["access_token"]).status_code == 401
    deadline = time.monotonic() + 5
    while not hook.posts() and time.monotonic() < deadline:
        time.sleep(0.02)
    event = json.loads(hook.posts()[0]["body"])
    assert (event["object_type"], event["aspect_type"], event["updates"]) == ("athlete", "update", {"authorized": "false"})
    assert emu.state()["revocations"][0]["via"] == "deauthorize"


def test_oura_subscription_handshake_expiry_renew(emu_factory, hook_factory):
    emu = emu_factory("oura", subscription_ttl_s=3600)

    def respond(req):
        if req["method"] == "GET":
            assert req["query"]["verification_token"] == "vt"
            return 200, {"challenge": req["query"]["challenge"]}
        return 200, b""

    hook = hook_factory(respond)
    headers = {"x-client-id": CLIENT_ID, "x-client-secret": CLIENT_SECRET}
    body = {"callback_url": hook.url, "verification_token": "vt", "event_type": "create", "data_type": "sleep"}
    assert HTTP.post(emu.url("/v2/webhook/subscription"), json=body, timeout=10).status_code == 401
    r = HTTP.post(emu.url("/v2/webhook/subscription"), json=body, headers=headers, timeout=10)
    assert r.status_code == 201 and set(r.json()) == {"id", "callback_url", "event_type", "data_type", "expiration_time"}
    sub_id = r.json()["id"]
    assert HTTP.post(emu.url("/v2/webhook/subscription"), json=body, headers=headers, timeout=10).status_code == 409
    doc = emu.create_sleep("user-123", notify=True)
    assert doc["webhook"]["status"] == 200
    post = hook.posts()[-1]
    assert post["headers"]["x-oura-signature"] == oura.sign(CLIENT_SECRET, post["headers"]["x-oura-timestamp"], post["body"])
    assert list(json.loads(post["body"])) == ["event_type", "data_type", "object_id", "event_time", "user_id"]
    emu.advance_clock(3601)
    assert emu.create_sleep("user-123", notify=True)["webhook"] is None      # expired: nothing is sent
    r = HTTP.put(emu.url(f"/v2/webhook/subscription/renew/{sub_id}"), headers=headers, timeout=10)
    assert r.status_code == 200
    assert emu.create_sleep("user-123", notify=True)["webhook"]["delivered"]


def test_google_subscriber_verification_and_notification(emu_factory, hook_factory):
    emu = emu_factory("googlehealth")
    secret = "Bearer hook-secret"

    def respond(req):
        if req["headers"].get("authorization") != secret:
            return 401, b""
        return (201 if json.loads(req["body"]).get("type") == "verification" else 204), b""

    hook = hook_factory(respond)
    payload = {"endpointUri": hook.url, "endpointAuthorization": {"secret": secret},
               "subscriberConfigs": [{"dataTypes": ["heart-rate", "steps"], "subscriptionCreatePolicy": "AUTOMATIC"}]}
    r = HTTP.post(emu.url("/v4/projects/p1/subscribers"), params={"subscriberId": "sub-1"}, json=payload,
                  headers=bearer("project-token"), timeout=10)
    assert r.status_code == 200 and r.json()["done"] is True
    assert r.json()["response"]["name"] == "projects/p1/subscribers/sub-1"
    verifications = hook.posts()
    assert [v["headers"].get("authorization") for v in verifications] == [secret, None]
    assert all(v["body"] == b'{"type": "verification"}' for v in verifications)
    link(emu)      # the user consents to health metrics and activity
    made = emu.create_data_points("1234567890", type="heart-rate", seconds=60, interval_s=10, notify=True)
    assert made["webhook"]["status"] == 204
    post = hook.posts()[-1]
    assert post["headers"]["authorization"] == secret
    pem = HTTP.get(emu.url("/_emulator/public-key"), timeout=10).text
    public = serialization.load_pem_public_key(pem.encode())
    assert googlehealth.verify(public, post["body"], post["headers"]["x-healthapi-signature"])
    note = json.loads(post["body"])["data"]
    assert (note["healthUserId"], note["dataType"], note["operation"]) == ("1234567890", "heart-rate", "UPSERT")
    assert set(note["intervals"][0]) == {"physicalTimeInterval", "civilDateTimeInterval", "civilIso8601TimeInterval"}
    keyset = HTTP.get(emu.url("/googlehealthapi/webhooks/webhooks_public_keyset.json"), timeout=10).json()
    assert keyset["primaryKeyId"] == emu.key_id and keyset["key"][0]["outputPrefixType"] == "TINK"
    # an endpoint that accepts requests without the secret fails the second verification POST
    lax = hook_factory(lambda req: (201, b""))
    payload["endpointUri"] = lax.url
    r = HTTP.post(emu.url("/v4/projects/p1/subscribers"), json=payload, headers=bearer("t"), timeout=10)
    assert r.status_code == 400 and r.json()["error"]["status"] == "FAILED_PRECONDITION"


def test_polar_webhook_ping_and_events(emu_factory, hook_factory):
    emu = emu_factory("polar", notification_url_base="http://169.254.169.254")
    hook = hook_factory(lambda req: (200, b""))
    r = HTTP.post(emu.url("/v3/webhooks"), json={"events": ["EXERCISE"], "url": hook.url},
                  auth=(CLIENT_ID, CLIENT_SECRET), timeout=10)
    assert r.status_code == 201, r.text
    data = r.json()["data"]
    assert set(data) == {"id", "events", "url", "signature_secret_key"}
    assert json.loads(hook.posts()[0]["body"])["event"] == "PING"
    listed = HTTP.get(emu.url("/v3/webhooks"), auth=(CLIENT_ID, CLIENT_SECRET), timeout=10).json()["data"]
    assert "signature_secret_key" not in listed[0]
    t = link(emu)
    HTTP.post(emu.url("/v3/users"), json={"member-id": "m-7"}, headers=bearer(t["access_token"]), timeout=10)
    ex = emu.create_exercise(475, seconds=30, notify=True)
    post = hook.posts()[-1]
    assert post["headers"]["polar-webhook-signature"] == polar.sign(data["signature_secret_key"], post["body"])
    event = json.loads(post["body"])
    assert list(event) == ["event", "user_id", "entity_id", "timestamp", "url"] and event["entity_id"] == ex["id"]
    assert event["url"] == f"http://169.254.169.254/v3/exercises/{ex['id']}"      # the SSRF option
    failing = hook_factory(lambda req: (500, b""))
    HTTP.delete(emu.url(f"/v3/webhooks/{data['id']}"), auth=(CLIENT_ID, CLIENT_SECRET), timeout=10)
    r = HTTP.post(emu.url("/v3/webhooks"), json={"events": ["EXERCISE"], "url": failing.url},
                  auth=(CLIENT_ID, CLIENT_SECRET), timeout=10)
    assert r.status_code == 400 and emu.state()["subscriptions"] == []


def test_silent_and_duplicate(emu_factory, hook_factory):
    hook = hook_factory()
    emu = emu_factory("oura", webhook_url=hook.url, silent=True)
    t = link(emu)
    r = HTTP.post(emu.url("/_emulator/webhooks/send"), json={"data_type": "sleep", "object_id": "x"}, timeout=10)
    assert r.json()["silenced"] is True and hook.posts() == []
    assert data_call(emu, t["access_token"]).status_code == 200      # the API still answers
    emu.configure(silent=False)
    r = HTTP.post(emu.url("/_emulator/webhooks/send"), json={"data_type": "sleep", "object_id": "x",
                                                            "duplicate": True}, timeout=10).json()
    assert r["status"] == 200 and len(r["deliveries"]) == 2
    assert hook.posts()[0]["body"] == hook.posts()[1]["body"]


# ------------------------------------------------------------------------------------------- data


def test_strava_activity_streams_and_listing(emu_factory):
    emu = emu_factory("strava")
    t = link(emu)
    act = emu.create_activity(134815, start=1_700_000_000, seconds=120, hr_base=110)
    assert {len(v) for v in act["streams"].values()} == {120}
    r = HTTP.get(emu.url(f"/api/v3/activities/{act['id']}/streams"), headers=bearer(t["access_token"]),
                 params={"keys": "time,heartrate,watts,latlng", "key_by_type": "true"}, timeout=10)
    by_type = r.json()
    assert set(by_type) == {"time", "heartrate", "watts", "latlng", "distance"}
    assert by_type["heartrate"]["data"] == act["streams"]["heartrate"] and by_type["heartrate"]["original_size"] == 120
    arr = HTTP.get(emu.url(f"/api/v3/activities/{act['id']}/streams"), headers=bearer(t["access_token"]),
                   params={"keys": "heartrate"}, timeout=10).json()
    assert isinstance(arr, list) and {s["type"] for s in arr} == {"heartrate", "distance"}
    private = emu.create_activity(134815, start=1_700_100_000, seconds=10, private=True)
    reader = link(emu, scope="read,activity:read")
    assert HTTP.get(emu.url(f"/api/v3/activities/{private['id']}"), headers=bearer(reader["access_token"]),
                    timeout=10).status_code == 404
    listed = HTTP.get(emu.url("/api/v3/athlete/activities"), headers=bearer(reader["access_token"]),
                      params={"after": 1_600_000_000, "per_page": 500}, timeout=10).json()
    assert [a["id"] for a in listed] == [act["id"]]
    listed = HTTP.get(emu.url("/api/v3/athlete/activities"), headers=bearer(t["access_token"]), timeout=10).json()
    assert [a["id"] for a in listed] == [private["id"], act["id"]]      # newest first
    assert HTTP.get(emu.url(f"/api/v3/activities/{act['id']}"), headers=bearer(t["access_token"]),
                    timeout=10).json()["device_name"] == "Garmin Edge 530"
    # the same seed makes the same data
    other = start_emulator("strava")
    try:
        assert other.create_activity(134815, start=1_700_000_000, seconds=120, hr_base=110)["streams"] == act["streams"]
    finally:
        other.stop()


def test_google_filter_and_paging(emu_factory):
    emu = emu_factory("googlehealth")
    t = link(emu)
    start = 1_767_225_600    # 2026-01-01T00:00:00Z
    values = list(range(60, 160))
    emu.create_data_points("1234567890", type="heart-rate", start=start, interval_s=60, values=values)
    flt = ('heart_rate.sample_time.physical_time >= "2026-01-01T00:10:00Z" AND '
           'heart_rate.sample_time.physical_time < "2026-01-01T01:10:00Z"')
    got, token = [], None
    while True:
        params = {"filter": flt, "pageSize": 25, **({"pageToken": token} if token else {})}
        r = HTTP.get(emu.url("/v4/users/me/dataTypes/heart-rate/dataPoints"), params=params,
                     headers=bearer(t["access_token"]), timeout=10)
        assert r.status_code == 200, r.text
        got += r.json()["dataPoints"]
        token = r.json().get("nextPageToken")
        if not token:
            break
    assert [int(p["heartRate"]["beatsPerMinute"]) for p in got] == values[10:70]
    first = got[0]["heartRate"]["sampleTime"]
    assert first == {"physicalTime": "2026-01-01T00:10:00Z", "utcOffset": "0s",
                     "civilTime": {"date": {"year": 2026, "month": 1, "day": 1}, "time": {"minutes": 10}}}
    bad = HTTP.get(emu.url("/v4/users/me/dataTypes/heart-rate/dataPoints"), headers=bearer(t["access_token"]),
                   params={"filter": 'steps.interval.start_time >= "2026-01-01T00:00:00Z"'}, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["status"] == "INVALID_ARGUMENT"
    steps_only = link(emu, scope=f"{googlehealth.SCOPE_PREFIX}activity_and_fitness.readonly")
    denied = HTTP.get(emu.url("/v4/users/me/dataTypes/heart-rate/dataPoints"),
                      headers=bearer(steps_only["access_token"]), timeout=10)
    assert denied.status_code == 403 and denied.json()["error"]["status"] == "PERMISSION_DENIED"


def test_polar_registration_exercise_and_continuous_hr(emu_factory):
    emu = emu_factory("polar")
    t = link(emu)
    h = bearer(t["access_token"])
    assert HTTP.get(emu.url("/v3/exercises"), headers=h, timeout=10).status_code == 403    # not registered yet
    reg = HTTP.post(emu.url("/v3/users"), json={"member-id": "m-1"}, headers=h, timeout=10)
    assert reg.status_code == 200 and reg.json()["polar-user-id"] == 475
    assert HTTP.post(emu.url("/v3/users"), json={"member-id": "m-1"}, headers=h, timeout=10).status_code == 409
    ex = emu.create_exercise(475, seconds=20, hr_values=[100, 101, None, 103], null_ranges=[[3, 4]])
    got = HTTP.get(emu.url(f"/v3/exercises/{ex['id']}"), params={"samples": "true"}, headers=h, timeout=10).json()
    hr = next(s for s in got["samples"] if s["sample-type"] == "0")
    assert hr == {"recording-rate": 1, "sample-type": "0", "data": "100,101,null,null"}
    assert got["heart-rate"] == {"average": 100, "maximum": 101} and got["duration"] == "PT4S"
    assert [e["id"] for e in HTTP.get(emu.url("/v3/exercises"), headers=h, timeout=10).json()] == [ex["id"]]
    emu.create_continuous_hr(475, "2026-01-02", interval_s=3600)
    day = HTTP.get(emu.url("/v3/users/continuous-heart-rate/2026-01-02"), headers=h, timeout=10).json()
    assert len(day["heart_rate_samples"]) == 24 and day["heart_rate_samples"][1]["sample_time"] == "01:00:00"
    assert HTTP.delete(emu.url("/v3/users/475"), headers=h, timeout=10).status_code == 204
    assert HTTP.get(emu.url("/v3/exercises"), headers=h, timeout=10).status_code == 401   # token revoked


def test_oura_heartrate_paging_and_documents(emu_factory):
    emu = emu_factory("oura", page_size=50)
    t = link(emu)
    h = bearer(t["access_token"])
    emu.create_heartrate("user-123", start=1_767_225_600, seconds=120 * 300, interval_s=300)
    rows, token = [], None
    while True:
        params = {"start_datetime": "2026-01-01T00:00:00+00:00", "end_datetime": "2026-01-02T00:00:00+00:00"}
        r = HTTP.get(emu.url("/v2/usercollection/heartrate"), params={**params, **({"next_token": token} if token else {})},
                     headers=h, timeout=10).json()
        rows += r["data"]
        token = r["next_token"]
        if not token:
            break
    assert len(rows) == 120 and rows[0]["timestamp"] == "2026-01-01T00:00:00+00:00"
    sleep = emu.create_sleep("user-123", bedtime_start=1_767_222_000, seconds=6 * 3600)
    doc = HTTP.get(emu.url(f"/v2/usercollection/sleep/{sleep['id']}"), headers=h, timeout=10).json()
    assert doc == sleep and len(doc["sleep_phase_5_min"]) == len(doc["hrv"]["items"]) == 72
    listed = HTTP.get(emu.url("/v2/usercollection/sleep"), params={"start_date": "2026-01-01", "end_date": "2026-01-01"},
                      headers=h, timeout=10).json()
    assert [d["id"] for d in listed["data"]] == [sleep["id"]]
    workout = HTTP.get(emu.url("/v2/usercollection/workout"), headers=h, timeout=10)
    assert workout.status_code == 401      # the token has no workout scope


# --------------------------------------------------------------------------------------- rate limits


def test_rate_limit_headers_and_429(emu_factory):
    s = emu_factory("strava", read_rate_limit_15min=3)
    t = link(s)
    for i in range(3):
        r = data_call(s, t["access_token"])
        assert r.status_code == 200 and r.headers["X-ReadRateLimit-Usage"] == f"{i + 1},{i + 1}"
    r = data_call(s, t["access_token"])
    assert r.status_code == 429 and r.headers["X-ReadRateLimit-Limit"] == "3,1000"
    assert r.headers["X-RateLimit-Usage"] == "4,4" and r.json()["message"] == "Rate Limit Exceeded"
    p = emu_factory("polar", rate_limit_15min_base=1, rate_limit_15min_per_user=0)
    t = link(p)
    HTTP.post(p.url("/v3/users"), json={"member-id": "m"}, headers=bearer(t["access_token"]), timeout=10)
    r = data_call(p, t["access_token"])
    assert r.status_code == 429 and r.headers["RateLimit-Usage"].startswith("2,")
    assert r.headers["RateLimit-Limit"] == "1,5100"
    o = emu_factory("oura", rate_limit_5min=1, retry_after_s=30)
    t = link(o)
    assert data_call(o, t["access_token"]).status_code == 200
    r = data_call(o, t["access_token"])
    assert r.status_code == 429 and r.headers["Retry-After"] == "30"
    g = emu_factory("googlehealth", rate_limited=True)
    r = HTTP.get(g.url("/v4/users/me/identity"), timeout=10)
    assert r.status_code == 429 and r.json()["error"]["status"] == "RESOURCE_EXHAUSTED"


# ------------------------------------------------------------------------------------ control API, load


def test_control_api(emu_factory):
    emu = emu_factory("polar")
    assert HTTP.post(emu.url("/_emulator/config"), json={"nope": 1}, timeout=10).status_code == 400
    assert HTTP.post(emu.url("/_emulator/config"), json={"access_ttl_s": 60}, timeout=10).json()["access_ttl_s"] == 60
    ids = HTTP.post(emu.url("/_emulator/users"), json={"count": 3}, timeout=10).json()["ids"]
    assert len(ids) == 3 and all(isinstance(i, int) for i in ids)
    ex = HTTP.post(emu.url("/_emulator/exercises"), json={"user": ids[0], "seconds": 10}, timeout=10)
    assert ex.status_code == 201 and ex.json()["samples"]
    st = HTTP.get(emu.url("/_emulator/state"), timeout=10).json()
    assert st["user_count"] == 4 and st["requests"]["POST /_emulator/exercises"] == 1


def test_many_users_and_concurrent_refreshes(emu_factory):
    emu = emu_factory("strava")
    emu.create_users(10_000)
    links = [link(emu, user=1_000_001 + i) for i in range(8)]
    errors = []

    def worker(tok):
        s = http_session()
        rt = tok["refresh_token"]
        for _ in range(250):
            r = s.post(emu.url("/oauth/token"), data={"grant_type": "refresh_token", "refresh_token": rt,
                                                      "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}, timeout=10)
            if r.status_code != 200:
                errors.append(r.text)
                return
            rt = r.json()["refresh_token"]

    threads = [threading.Thread(target=worker, args=(tok,)) for tok in links]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    st = emu.state(brief=True)
    assert st["user_count"] == 10_001 and st["refreshes_served"] == 2000 and st["refresh_reuse"] == {}


# ------------------------------------------------------------------------------------------------ WHOOP

WHOOP_SCOPE = "offline read:profile read:sleep read:recovery read:workout"


def test_whoop_oauth_state_offline_and_rotation(emu_factory):
    from emulators import whoop
    emu = emu_factory("whoop")
    # WHOOP wants a state of at least 8 characters.
    q = query(emu.consent(authorize_url(emu, WHOOP_SCOPE, state="short")))
    assert q["error"] == "invalid_state" and q["state"] == "short"
    t = link(emu, scope=WHOOP_SCOPE, state="state-0001")
    assert set(t) == {"access_token", "expires_in", "refresh_token", "scope", "token_type"}
    assert t["expires_in"] == 3600 and t["token_type"] == "bearer" and t["scope"] == WHOOP_SCOPE
    # Without offline there is no refresh token.
    t2 = link(emu, scope="read:sleep", state="state-0002")
    assert "refresh_token" not in t2
    # Every refresh rotates; scope=offline (WHOOP's tutorials) and no scope (RFC 6749 §6) both work.
    r = token_request(emu, {"grant_type": "refresh_token", "refresh_token": t["refresh_token"], "scope": "offline"})
    assert r.status_code == 200 and r.json()["refresh_token"] != t["refresh_token"]
    r2 = refresh(emu, r.json()["refresh_token"])
    assert r2.status_code == 200 and r2.json()["refresh_token"] != r.json()["refresh_token"]
    assert emu.state()["refresh_scope_param"] == {"offline": 1, "other": 0, "none": 1}
    # Client credentials only in the body.
    basic = HTTP.post(emu.url(emu.token_path), data={"grant_type": "refresh_token",
                                                     "refresh_token": r2.json()["refresh_token"]},
                      auth=(CLIENT_ID, CLIENT_SECRET), timeout=10)
    assert basic.status_code == 401 and basic.json()["error"] == "invalid_client"
    # Revocation ends the grant (204) and the token stops working.
    access = r2.json()["access_token"]
    assert HTTP.delete(emu.url("/developer/v2/user/access"), headers=bearer(access), timeout=10).status_code == 204
    assert HTTP.get(emu.url("/developer/v2/user/profile/basic"), headers=bearer(access), timeout=10).status_code == 401
    assert whoop.sign("test-secret", "1748241241000",
                      b'{"user_id":10129,"id":10235,"type":"workout.updated",'
                      b'"trace_id":"d3709ee7-104e-4f70-a928-2932964b017b"}') == \
        "7tbyl5bqf4mUAO4dLq5J5lxjZ/Da/76/RK645/MqImY="        # vector B2


def test_whoop_records_paging_scores_and_rate_limits(emu_factory):
    emu = emu_factory("whoop", rate_limit_per_min=40)
    t = link(emu, scope=WHOOP_SCOPE, state="state-0003")
    h = bearer(t["access_token"])
    now = time.time()
    nights = [emu.create_sleep(10129, start=now - (d + 1) * 86400, seconds=7 * 3600) for d in range(6)]
    nap = emu.create_sleep(10129, start=now - 86400 + 9 * 3600, seconds=1200, nap=True)
    assert nap["recovery"] is None and nap["sleep"]["cycle_id"] == nights[0]["sleep"]["cycle_id"]
    r = HTTP.get(emu.url("/developer/v2/activity/sleep"), params={"limit": 4}, headers=h, timeout=10)
    page = r.json()
    assert r.status_code == 200 and len(page["records"]) == 4 and page["next_token"]
    starts = [rec["start"] for rec in page["records"]]
    assert starts == sorted(starts, reverse=True), "newest first"
    r = HTTP.get(emu.url("/developer/v2/activity/sleep"), params={"limit": 4, "nextToken": page["next_token"]},
                 headers=h, timeout=10)
    assert len(r.json()["records"]) == 3 and "next_token" not in r.json()
    assert HTTP.get(emu.url("/developer/v2/activity/sleep"), params={"limit": 26}, headers=h,
                    timeout=10).status_code == 400
    # A recovery by cycle, naming its sleep; the sleep by id; a score only when SCORED.
    s = nights[0]["sleep"]
    rec = HTTP.get(emu.url(f"/developer/v2/cycle/{s['cycle_id']}/recovery"), headers=h, timeout=10).json()
    assert rec["sleep_id"] == s["id"] and rec["score_state"] == "SCORED" and "hrv_rmssd_milli" in rec["score"]
    assert HTTP.get(emu.url(f"/developer/v2/activity/sleep/{s['id']}"), headers=h, timeout=10).json() == s
    pending = emu.create_workout(10129, score_state="PENDING_SCORE")
    assert "score" not in pending
    scored = emu.update_record("workout", pending["id"], score_state="SCORED")
    assert scored["score"]["distance_meter"] > 0
    # Rate-limit headers (developer.whoop.com/docs/developing/rate-limiting) and the 429 beyond them.
    r = HTTP.get(emu.url("/developer/v2/user/profile/basic"), headers=h, timeout=10)
    assert r.headers["X-RateLimit-Limit"] == "40, 40;window=60, 10000;window=86400"
    remaining = int(r.headers["X-RateLimit-Remaining"])
    assert 0 < remaining < 40 and 0 <= int(r.headers["X-RateLimit-Reset"]) <= 60
    for _ in range(remaining):
        HTTP.get(emu.url("/developer/v2/user/profile/basic"), headers=h, timeout=10)
    r = HTTP.get(emu.url("/developer/v2/user/profile/basic"), headers=h, timeout=10)
    assert r.status_code == 429 and r.headers["X-RateLimit-Remaining"] == "0"
    assert emu.state()["rate_limited_answers"] == 1


def test_whoop_webhooks_signed_to_the_dashboard_url_for_linked_users(emu_factory, hook_factory):
    from emulators import whoop
    hook = hook_factory()
    emu = emu_factory("whoop", webhook_url=hook.url)
    made = emu.create_sleep(10129, notify=True)
    assert made["webhooks"] == [None, None], "no grant yet: nothing is announced"
    t = link(emu, scope=WHOOP_SCOPE, state="state-0004")
    made = emu.create_sleep(10129, notify=True)
    assert [w["status"] for w in made["webhooks"]] == [200, 200]
    posts = hook.posts()
    bodies = [json.loads(p["body"]) for p in posts]
    assert [(b["type"], b["id"], b["user_id"]) for b in bodies] == [
        ("sleep.updated", made["sleep"]["id"], 10129), ("recovery.updated", made["sleep"]["id"], 10129)]
    assert list(bodies[0]) == ["user_id", "id", "type", "trace_id"]
    for p in posts:
        ts = p["headers"]["x-whoop-signature-timestamp"]
        assert len(ts) == 13 and abs(int(ts) - time.time() * 1000) < 60_000, "epoch milliseconds"
        assert p["headers"]["x-whoop-signature"] == whoop.sign(CLIENT_SECRET, ts, p["body"])
    gone = emu.delete_sleep(made["sleep"]["id"])
    assert [json.loads(w["body"])["type"] for w in gone["webhooks"]] == ["sleep.deleted", "recovery.deleted"]
    HTTP.delete(emu.url("/developer/v2/user/access"), headers=bearer(t["access_token"]), timeout=10)
    assert emu.create_workout(10129, notify=True)["webhook"] is None, "revoked: no more webhooks"


# ------------------------------------------------------------------------------------------- withings

WITHINGS_SCOPE = "user.info,user.metrics,user.activity"


def withings_token(emu, form: dict, action: str | None = "requesttoken", url: str | None = None) -> dict:
    """A Withings token-endpoint call, the action in the form body: HTTP 200 always, the envelope decides."""
    data = {**({"action": action} if action else {}), "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, **form}
    r = HTTP.post(url or emu.urls()["token"], data=data, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def withings_link(emu) -> dict:
    q = query(emu.consent(authorize_url(emu, WITHINGS_SCOPE)))
    answer = withings_token(emu, {"grant_type": "authorization_code", "code": q["code"], "redirect_uri": REDIRECT})
    assert answer["status"] == 0, answer
    return answer["body"]


def withings_call(emu, path: str, token: str, **form) -> dict:
    r = HTTP.post(emu.url(path), data=form, headers=bearer(token), timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def test_withings_token_envelope_and_rotation(emu_factory):
    emu = emu_factory("withings")
    q = query(emu.consent(authorize_url(emu, WITHINGS_SCOPE)))
    # The token URL is the plain endpoint; without the action in the body it does not know what is
    # asked, and an action in the query string is not read.
    assert emu.urls()["token"] == emu.url("/v2/oauth2")
    assert withings_token(emu, {"grant_type": "authorization_code", "code": q["code"]}, action=None)["status"] == 2554
    assert withings_token(emu, {"grant_type": "authorization_code", "code": q["code"], "redirect_uri": REDIRECT},
                          action=None, url=emu.url("/v2/oauth2?action=requesttoken"))["status"] == 2554
    body = withings_token(emu, {"grant_type": "authorization_code", "code": q["code"], "redirect_uri": REDIRECT})
    assert body["status"] == 0 and body["body"]["userid"] == "12345", body
    tok = body["body"]
    assert tok["scope"] == WITHINGS_SCOPE and tok["expires_in"] == 10800 and tok["token_type"] == "Bearer"
    unknown = withings_token(emu, {"grant_type": "authorization_code", "code": "0" * 40, "redirect_uri": REDIRECT})
    assert unknown == {"status": 503, "body": {}, "error": "Invalid Params: invalid code"}
    bad_client = withings_token(emu, {"grant_type": "refresh_token", "refresh_token": tok["refresh_token"],
                                      "client_secret": "wrong"})
    assert bad_client["status"] == 503 and "client_secret" in bad_client["error"]

    # Rotation: a new refresh token each time; the replaced one dies once the new access token is used.
    r1 = withings_token(emu, {"grant_type": "refresh_token", "refresh_token": tok["refresh_token"]})["body"]
    assert r1["refresh_token"] != tok["refresh_token"]
    assert withings_call(emu, "/measure", r1["access_token"], action="getmeas")["status"] == 0
    dead = withings_token(emu, {"grant_type": "refresh_token", "refresh_token": tok["refresh_token"]})
    assert dead == {"status": 503, "body": {}, "error": "Invalid Params: invalid refresh_token"}
    # ... or 8 hours after it was replaced.
    r2 = withings_token(emu, {"grant_type": "refresh_token", "refresh_token": r1["refresh_token"]})["body"]
    emu.advance_clock(8 * 3600 + 5)
    late = withings_token(emu, {"grant_type": "refresh_token", "refresh_token": r1["refresh_token"]})
    assert late["status"] == 503 and "refresh_token" in late["error"]
    # The old access token has expired by now: status 401 inside an HTTP 200.
    expired = withings_call(emu, "/measure", r2["access_token"], action="getmeas")
    assert expired["status"] == 401 and "invalid_token" in expired["error"]


def test_withings_signed_revoke(emu_factory):
    from emulators import withings
    assert withings.sign("my-client-secret", action="getnonce", client_id="my-client-id", timestamp="1700000000") \
        == "9e39001b55385a74659709a410b02b01eaf59631da91da750138b5645ca3b5ee"   # vector B7
    emu = emu_factory("withings")
    tok = withings_link(emu)
    ts = str(int(time.time()))

    def nonce(signature):
        r = HTTP.post(emu.url("/v2/signature"), data={"action": "getnonce", "client_id": CLIENT_ID, "timestamp": ts,
                                                      "signature": signature}, timeout=10)
        return r.json()

    assert nonce("0" * 64)["status"] == 342
    n = nonce(withings.sign(CLIENT_SECRET, action="getnonce", client_id=CLIENT_ID, timestamp=ts))["body"]["nonce"]
    form = {"action": "revoke", "client_id": CLIENT_ID, "nonce": n, "userid": "12345",
            "signature": withings.sign(CLIENT_SECRET, action="revoke", client_id=CLIENT_ID, nonce=n)}
    assert HTTP.post(emu.url("/v2/oauth2"), data=form, timeout=10).json() == {"status": 0, "body": {}}
    assert withings_call(emu, "/measure", tok["access_token"], action="getmeas")["status"] == 401
    assert [r["via"] for r in emu.state()["revocations"]] == ["revoke"]
    # A nonce is good for one call.
    assert HTTP.post(emu.url("/v2/oauth2"), data=form, timeout=10).json()["status"] == 503


def test_withings_subscriptions_check_the_callback_and_notify_by_form(emu_factory, hook_factory):
    emu = emu_factory("withings")
    tok = withings_link(emu)
    ok = hook_factory()
    ok.server.RequestHandlerClass.do_HEAD = ok.server.RequestHandlerClass.do_GET
    answer = withings_call(emu, "/notify", tok["access_token"], action="subscribe", callbackurl=ok.url + "?k=v",
                           appli="1", comment="test")
    assert answer["status"] == 0, answer
    assert [r["method"] for r in ok.requests] == ["HEAD"]
    listed = withings_call(emu, "/notify", tok["access_token"], action="list")["body"]["profiles"]
    assert [(p["appli"], p["callbackurl"]) for p in listed] == [(1, ok.url + "?k=v")]
    # A callback that does not answer HEAD with 2xx is refused.
    refused = hook_factory()            # no HEAD handler: 501
    answer = withings_call(emu, "/notify", tok["access_token"], action="subscribe", callbackurl=refused.url, appli="4")
    assert answer["status"] == 293, answer
    # Sleep needs user.activity, granted; bed-in (50) needs user.sleepevents, not granted.
    assert withings_call(emu, "/notify", tok["access_token"], action="subscribe", callbackurl=ok.url,
                         appli="50")["status"] == 277

    group = emu.create_measure_group(12345, measures=[(1, 72500, -3)], notify=True)
    assert group["webhook"]["status"] == 200
    [post] = ok.posts()
    assert post["headers"]["content-type"] == "application/x-www-form-urlencoded"
    assert post["query"] == {"k": "v"}
    assert parse_qs(post["body"].decode()) == {"k": ["v"], "userid": ["12345"], "appli": ["1"],
                                               "startdate": [str(group["date"])], "enddate": [str(group["created"])]}
    # Four failed deliveries in a row remove the subscription.
    ok.respond = lambda req: (500, b"")
    for _ in range(4):
        emu.send_webhook(userid=12345, appli=1, startdate=1, enddate=2)
    assert emu.state(brief=True)["subscriptions"] == []


def test_withings_data_services(emu_factory):
    emu = emu_factory("withings", measure_page_size=1)
    tok = withings_link(emu)["access_token"]
    emu.create_measure_group(12345, date=1_795_000_000, measures=[(9, 89, 0), (10, 109, 0)], model="BPM Core")
    emu.create_measure_group(12345, date=1_795_000_100, measures=[(1, 72500, -3)])
    page = withings_call(emu, "/measure", tok, action="getmeas", meastypes="1,9", category="1")["body"]
    assert page["more"] == 1 and page["offset"] == 1 and page["measuregrps"][0]["measures"][0]["value"] == 72500
    rest = withings_call(emu, "/measure", tok, action="getmeas", meastypes="1,9", offset="1")["body"]
    assert rest["more"] == 0 and [m["type"] for m in rest["measuregrps"][0]["measures"]] == [9]
    assert rest["measuregrps"][0]["grpid"] > 2 ** 32
    # Intraday: at most 24 hours per call, an empty series is an empty array.
    emu.create_intraday(12345, start=1_795_000_020, minutes=3)
    day = withings_call(emu, "/v2/measure", tok, action="getintradayactivity", startdate="1794990000",
                        enddate="1795100000", data_fields="heart_rate,steps")["body"]["series"]
    assert sorted(day) == ["1795000020", "1795000080", "1795000140"]
    assert set(next(iter(day.values()))) == {"deviceid", "model", "model_id", "heart_rate", "steps"}
    assert withings_call(emu, "/v2/measure", tok, action="getintradayactivity", startdate="1", enddate="2")["body"] \
        == {"series": []}
    # Sleep needs its dates.
    assert withings_call(emu, "/v2/sleep", tok, action="get")["status"] == 503
    emu.create_sleep(12345, start=1_795_000_020, seconds=3600)
    night = withings_call(emu, "/v2/sleep", tok, action="get", startdate="1795000020", enddate="1795003620",
                          data_fields="hr")["body"]
    assert [s["state"] for s in night["series"]] == [1, 0] and "rr" not in night["series"][0]
    # 120 requests a minute per app; then status 601 in an HTTP 200.
    emu.configure(rate_limit_per_min=0)
    assert withings_call(emu, "/measure", tok, action="getmeas") == {"status": 601, "body": {}, "error": "Too many request"}


# ------------------------------------------------------------------------------------------- Suunto


def test_suunto_tokens_gateway_fit_and_notifications(emu_factory, hook_factory):
    from emulators import suunto
    # B5: hex HMAC-SHA256(notification secret, body).
    b5 = b'{"type":"WORKOUT_CREATED","username":"suuntouser1","workoutKey":"5e8f1b2c3d4e5f6a7b8c9d0e"}'
    assert suunto.sign("test-secret", b5) == "968c007ff64902b313b10a42e8707ecc4ba02cd368e535ed9fbf9a4031551652"
    hook = hook_factory()
    emu = emu_factory("suunto", webhook_url=hook.url, notification_secret="n-secret")
    # No scope asked for; Basic client authentication only; the access token is a JWT naming the user.
    q = query(emu.consent(emu.url("/oauth/authorize") + "?" + urlencode(
        {"client_id": CLIENT_ID, "redirect_uri": REDIRECT, "response_type": "code", "state": "st-1"})))
    form = {"grant_type": "authorization_code", "code": q["code"], "redirect_uri": REDIRECT}
    assert HTTP.post(emu.url("/oauth/token"), data={**form, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
                     timeout=10).status_code == 401
    t = HTTP.post(emu.url("/oauth/token"), data=form, auth=(CLIENT_ID, CLIENT_SECRET), timeout=10).json()
    claims = suunto.jwt_claims(t["access_token"])
    assert claims["user"] == t["user"] == "suuntouser1" and claims["exp"] > time.time()
    assert suunto.jwt_claims(t["refresh_token"])["exp"] > claims["exp"]
    new = HTTP.post(emu.url("/oauth/token"), data={"grant_type": "refresh_token", "refresh_token": t["refresh_token"]},
                    auth=(CLIENT_ID, CLIENT_SECRET), timeout=10).json()
    assert new["refresh_token"] != t["refresh_token"] and suunto.jwt_claims(new["access_token"])["user"] == "suuntouser1"
    # The gateway wants the subscription key (primary or secondary) before anything else.
    w = emu.create_workout("suuntouser1", seconds=5)
    fit_url = emu.url(f"/v3/workouts/{w['workoutKey']}/fit")
    r = HTTP.get(fit_url, headers=bearer(new["access_token"]), timeout=10)
    assert r.status_code == 401 and "missing subscription key" in r.json()["message"]
    r = HTTP.get(fit_url, headers={**bearer(new["access_token"]), "Ocp-Apim-Subscription-Key": "nope"}, timeout=10)
    assert r.status_code == 401 and "invalid subscription key" in r.json()["message"]
    key = {"Ocp-Apim-Subscription-Key": emu.opt("subscription_keys")[1]}
    r = HTTP.get(fit_url, headers={**bearer(new["access_token"]), **key}, timeout=10)
    assert r.status_code == 200 and r.content[8:12] == b".FIT" and len(r.content) == w["fit_bytes"]
    assert suunto.fit_crc(r.content[:-2]) == int.from_bytes(r.content[-2:], "little")
    assert HTTP.get(emu.url(f"/v2/workout/exportFit/{w['workoutKey']}"), headers={**bearer(new["access_token"]), **key},
                    timeout=10).content == r.content
    listed = HTTP.get(emu.url("/v3/workouts"), params={"since": w["startTime"], "filter-by-modification-time": "false"},
                      headers={**bearer(new["access_token"]), **key}, timeout=10).json()
    assert listed["error"] is None and [x["workoutKey"] for x in listed["payload"]] == [w["workoutKey"]]
    emu.configure(quota_exhausted=True)
    assert HTTP.get(fit_url, headers={**bearer(new["access_token"]), **key}, timeout=10).status_code == 403
    emu.configure(quota_exhausted=False, rate_limit_per_min=1)
    statuses = [HTTP.get(fit_url, headers={**bearer(new["access_token"]), **key}, timeout=10) for _ in range(2)]
    r = statuses[-1]
    assert statuses[0].status_code == 200 and r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    emu.configure(rate_limit_per_min=None)
    # Notifications: signed over the exact bytes; 24/7 samples inline; the legacy form.
    emu.create_samples("suuntouser1", kind="activity", count=2, notify=True)
    emu.send_webhook(type="WORKOUT_CREATED", workout_key=w["workoutKey"], legacy_form=True)
    for post in hook.posts():
        assert post["headers"]["x-hmac-sha256-signature"] == suunto.sign("n-secret", post["body"])
    pushed = json.loads(hook.posts()[0]["body"])
    assert pushed["type"] == "SUUNTO_247_ACTIVITY_CREATED" and len(pushed["samples"]) == 2
    assert pushed["samples"][0]["timestamp"].endswith("+02:00") and "HR" in pushed["samples"][0]["entryData"]
    assert hook.posts()[1]["body"] == f"username=suuntouser1&workoutid={w['workoutKey']}".encode()
    # Deauthorize kills the grant's tokens.
    r = HTTP.get(emu.url("/oauth/deauthorize"), params={"client_id": CLIENT_ID}, headers=bearer(new["access_token"]),
                 timeout=10)
    assert r.status_code == 200 and emu.state()["revocations"][-1]["via"] == "deauthorize"
    assert HTTP.get(fit_url, headers={**bearer(new["access_token"]), **key}, timeout=10).status_code == 401


# ------------------------------------------------------------------------------------------- Wahoo

WAHOO_SCOPE = "user_read workouts_read offline_data"


def test_wahoo_oauth_pkce_token_shape_and_rotation(emu_factory):
    import hashlib
    emu = emu_factory("wahoo")
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert challenge == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"       # vector A1
    # A wrong verifier is refused; the right one gets Wahoo's token answer.
    q = query(emu.consent(authorize_url(emu, WAHOO_SCOPE, code_challenge=challenge, code_challenge_method="S256")))
    r = token_request(emu, {"grant_type": "authorization_code", "code": q["code"], "redirect_uri": REDIRECT,
                            "code_verifier": "x" * 43})
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    t = link(emu, scope=WAHOO_SCOPE, code_challenge=challenge, code_challenge_method="S256", code_verifier=verifier)
    assert set(t) == {"access_token", "token_type", "expires_in", "refresh_token", "scope", "created_at"}
    assert t["expires_in"] == 7200 and t["scope"] == WAHOO_SCOPE and abs(t["created_at"] - time.time()) < 60
    # Client credentials as form parameters only (or in the query, as Wahoo's examples send them).
    basic = HTTP.post(emu.url(emu.token_path), data={"grant_type": "refresh_token",
                                                     "refresh_token": t["refresh_token"]},
                      auth=(CLIENT_ID, CLIENT_SECRET), timeout=10)
    assert basic.status_code == 401 and basic.json()["error"] == "invalid_client"
    r = HTTP.post(emu.url(emu.token_path) + "?" + urlencode({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                                                            "grant_type": "refresh_token",
                                                            "refresh_token": t["refresh_token"]}), timeout=10)
    assert r.status_code == 200 and r.json()["refresh_token"] != t["refresh_token"]
    # Rotation: the replaced refresh token works until the new pair is used, then it is dead.
    assert refresh(emu, t["refresh_token"]).status_code == 200
    latest = refresh(emu, t["refresh_token"]).json()
    assert HTTP.get(emu.url("/v1/user"), headers=bearer(latest["access_token"]), timeout=10).json()["id"] == 60462
    assert refresh(emu, t["refresh_token"]).json()["error"] == "invalid_grant"
    # DELETE /v1/permissions withdraws the app's access.
    assert HTTP.delete(emu.url("/v1/permissions"), headers=bearer(latest["access_token"]), timeout=10).status_code == 200
    assert HTTP.get(emu.url("/v1/user"), headers=bearer(latest["access_token"]), timeout=10).status_code == 401
    assert emu.state()["revocations"][-1]["via"] == "deauthorize"


def test_wahoo_workouts_summaries_files_and_rate_limits(emu_factory):
    from emulators import wahoo
    emu = emu_factory("wahoo", rate_limit_5min=25, rate_limit_hour=100, rate_limit_day=250)   # a sandbox app
    h = bearer(link(emu, scope=WAHOO_SCOPE)["access_token"])
    ride = emu.create_workout(60462)
    manual = emu.create_workout(60462, fixture=None, manual=True, start=time.time() - 3600, distance=5000)
    pending = emu.create_workout(60462, fixture=None, summary=False, start=time.time() - 600)
    r = HTTP.get(emu.url("/v1/workouts"), params={"per_page": 2}, headers=h, timeout=10)
    page = r.json()
    assert r.status_code == 200 and page["total"] == 3 and page["per_page"] == 2 and page["order"] == "descending"
    assert [w["id"] for w in page["workouts"]] == [pending["workout"]["id"], manual["workout"]["id"]], "newest first"
    assert page["workouts"][0]["workout_summary"] is None
    assert page["workouts"][1]["workout_summary"]["distance_accum"] == "5000.0", "numbers as strings"
    assert [w["id"] for w in HTTP.get(emu.url("/v1/workouts"), params={"per_page": 2, "page": 2}, headers=h,
                                      timeout=10).json()["workouts"]] == [ride["workout"]["id"]]
    assert HTTP.get(emu.url(f"/v1/workouts/{pending['workout']['id']}/workout_summary"), headers=h,
                    timeout=10).status_code == 404
    summary = HTTP.get(emu.url(f"/v1/workouts/{ride['workout']['id']}/workout_summary"), headers=h, timeout=10).json()
    assert summary["file"]["url"] == ride["file"]["url"] and "workout" not in summary
    # The FIT file on the CDN path, without authentication, byte for byte.
    f = HTTP.get(ride["file"]["url"], timeout=10)
    assert f.status_code == 200 and f.content == (wahoo.DATA_DIR / "wahoo-elemnt-bolt-no-app-id.fit").read_bytes()
    assert "/wahoo-cloud/production/uploads/workout_file/file/" in ride["file"]["url"]
    assert HTTP.get(ride["file"]["url"] + "x", timeout=10).status_code == 403
    # Rate-limit headers (day, hour, 5 min) and the 429 once a window is spent (vector A8's shape).
    r = HTTP.get(emu.url("/v1/user"), headers=h, timeout=10)
    assert r.headers["X-RateLimit-Limit"] == "250, 100, 25" and r.headers["X-RateLimit-Reset"] == "0"
    used = 250 - int(r.headers["X-RateLimit-Remaining"].split(",")[0])
    for _ in range(25 - used):
        last = HTTP.get(emu.url("/v1/user"), headers=h, timeout=10)
    assert last.status_code == 200 and last.headers["X-RateLimit-Remaining"].endswith(", 0")
    assert 0 < int(last.headers["X-RateLimit-Reset"]) <= 300
    r = HTTP.get(emu.url("/v1/user"), headers=h, timeout=10)
    assert r.status_code == 429 and r.headers["X-RateLimit-Remaining"] == "224, 74, 0"
    assert HTTP.get(ride["file"]["url"], timeout=10).status_code == 200, "CDN downloads are not rate limited"


def test_wahoo_webhook_to_the_portal_url_for_offline_data_users(emu_factory, hook_factory):
    hook = hook_factory()
    emu = emu_factory("wahoo", webhook_url=hook.url, webhook_token="portal-token")
    assert emu.create_workout(60462, notify=True)["webhook"] is None, "no grant yet: nothing is sent"
    link(emu, scope="user_read workouts_read")
    assert emu.create_workout(60462, notify=True)["webhook"] is None, "webhooks need offline_data"
    link(emu, scope=WAHOO_SCOPE)
    made = emu.create_workout(60462, notify=True)
    assert made["webhook"]["status"] == 200
    [post] = hook.posts()
    assert post["headers"]["content-type"] == "application/json"
    assert not [k for k in post["headers"] if "signature" in k], "Wahoo signs nothing"
    body = json.loads(post["body"])
    assert list(body) == ["event_type", "webhook_token", "user", "workout_summary"]
    assert body["webhook_token"] == "portal-token" and body["user"] == {"id": 60462}
    assert body["workout_summary"]["workout"]["id"] == made["workout"]["id"]
    assert body["workout_summary"]["file"]["url"] == made["file"]["url"]
    # An edit is a new revision; anything but 200 is retried.
    edited = emu.update_workout(made["workout"]["id"], name="Evening", notify=True)
    assert edited["updated_at"] > made["updated_at"] and edited["edited"] is True
    hook.respond = lambda req: (204, b"")
    assert emu.send_webhook(workout_id=made["workout"]["id"])["attempts"] == 3


# ----------------------------------------------------------------------------------------------- Garmin


def test_garmin_pkce_required_permissions_and_account_calls(emu_factory):
    from emulators import garmin
    emu = emu_factory("garmin")
    # Without an S256 challenge the authorize request goes back with invalid_request.
    for extra in ({}, {"code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
                       "code_challenge_method": "plain"}):
        q = query(emu.consent(authorize_url(emu, "", **extra)))
        assert q["error"] == "invalid_request" and q["state"] == "st-1", q
    # Vector A1; no scope is sent, the consent page lists permissions with historical data unticked.
    tokens = link(emu, scope="", code_challenge="E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
                  code_challenge_method="S256", code_verifier="dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
    assert set(tokens) >= {"access_token", "refresh_token", "expires_in", "refresh_token_expires_in"}
    h = bearer(tokens["access_token"])
    assert HTTP.get(emu.url("/wellness-api/rest/user/id"), headers=h, timeout=10).json() == {
        "userId": garmin.GarminEmulator.default_user_id}
    permissions = HTTP.get(emu.url("/wellness-api/rest/user/permissions"), headers=h, timeout=10).json()
    assert permissions == {"permissions": [p for p in garmin.PERMISSIONS if p != "HISTORICAL_DATA_EXPORT"]}
    # Backfill needs HISTORICAL_DATA_EXPORT.
    r = HTTP.get(emu.url("/wellness-api/rest/backfill/dailies"), headers=h, timeout=10,
                 params={"summaryStartTimeInSeconds": 0, "summaryEndTimeInSeconds": 86400})
    assert r.status_code == 403 and "errorMessage" in r.json()
    r = HTTP.delete(emu.url("/wellness-api/rest/user/registration"), headers=h, timeout=10)
    assert r.status_code == 204
    assert HTTP.get(emu.url("/wellness-api/rest/user/id"), headers=h, timeout=10).status_code == 401
    assert emu.state()["revocations"][-1]["via"] == "deregister"


def test_garmin_push_ping_files_and_backfill(emu_factory, hook_factory):
    from emulators import garmin
    hook = hook_factory()
    emu = emu_factory("garmin", webhook_url=hook.url)
    checked = [p for p in garmin.PERMISSIONS]
    q = query(emu.consent(authorize_url(emu, "", code_challenge="E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
                                        code_challenge_method="S256"), granted_scope=checked))
    tokens = token_request(emu, {"grant_type": "authorization_code", "code": q["code"], "redirect_uri": REDIRECT,
                                 "code_verifier": "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"}).json()
    h = bearer(tokens["access_token"])
    user = garmin.GarminEmulator.default_user_id
    # Push: the summaries themselves, with the garmin-client-id header and no signature.
    day = int(time.time()) // 86400 * 86400 - 86400
    daily = emu.make_dailies(user, day, seconds=600)
    assert emu.deliver_summaries(user, "dailies", [daily])["status"] == 200
    push = hook.posts()[-1]
    assert push["headers"]["garmin-client-id"] == CLIENT_ID
    assert json.loads(push["body"]) == {"dailies": [{"userId": user, **daily}]}
    # Ping: a callback that answers the list with the user's token (and its own pull token).
    emu.configure(mode="ping")
    emu.deliver_summaries(user, "dailies", [daily])
    [item] = json.loads(hook.posts()[-1]["body"])["dailies"]
    assert set(item) == {"userId", "callbackURL"}
    assert HTTP.get(item["callbackURL"], timeout=10).status_code == 401
    assert HTTP.get(item["callbackURL"], headers=h, timeout=10).json() == [daily]
    # Activity files are always pings; the callback answers the file's bytes.
    made = emu.create_activity_file(user)
    [file_item] = json.loads(hook.posts()[-1]["body"])["activityFiles"]
    assert file_item["fileType"] == "FIT" and file_item["activityId"] == made["activityId"]
    got = HTTP.get(file_item["callbackURL"], headers=h, timeout=10)
    assert got.status_code == 200 and got.content[8:12] == b".FIT"
    # Backfill: 202 then the window's summaries arrive; the same window again is 409; over 30 days 400.
    emu.configure(mode="push")
    params = {"summaryStartTimeInSeconds": day - 3600, "summaryEndTimeInSeconds": day + 3600}
    before = len(hook.posts())
    assert HTTP.get(emu.url("/wellness-api/rest/backfill/dailies"), headers=h, params=params, timeout=10).status_code == 202
    deadline = time.time() + 5
    while len(hook.posts()) == before and time.time() < deadline:
        time.sleep(0.05)
    assert "dailies" in json.loads(hook.posts()[-1]["body"])
    assert HTTP.get(emu.url("/wellness-api/rest/backfill/dailies"), headers=h, params=params, timeout=10).status_code == 409
    wide = {"summaryStartTimeInSeconds": day - 31 * 86400, "summaryEndTimeInSeconds": day}
    assert HTTP.get(emu.url("/wellness-api/rest/backfill/dailies"), headers=h, params=wide, timeout=10).status_code == 400
    # The user disconnects at Garmin: a deregistration is pushed.
    emu.revoke_user(user)
    deadline = time.time() + 5
    while "deregistrations" not in hook.posts()[-1]["body"].decode() and time.time() < deadline:
        time.sleep(0.05)
    assert json.loads(hook.posts()[-1]["body"]) == {"deregistrations": [{"userId": user}]}
