"""Cloud accounts under faults, end to end: the real daemon against the Strava emulator (and Oura's where
strict refresh-token rotation matters), through public surfaces only — the daemon's HTTP API, config,
CLI, logs, file sink and store file; the emulators' vendor endpoints and control API.

Covered: refused OAuth states (reused, forged, expired, denied) and the authorize API's errors; a
refresh token rotated away behind the daemon's back at a strict vendor; a long vendor outage; SIGKILL
in the middle of a refresh (lenient and strict vendor); the silence watchdog's reconcile poll; vendor
rate limiting; token key rotation (and a missing key); the `vendors`, `config check` and `replay` CLI.

Refresh timing the tests rely on (AccountEngine.refreshDue): a refresh is due max(60 s, 10 % of the
lifetime) before expiry, minus up to half that again as jitter, so an access token of 61 s is due at
once, 95 s within 5-35 s, and an hour's only after ~54 min. Transient refresh failures back off
15 s * 2^n (jittered, at least 5 s).
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlencode, urlparse, urlunparse

import pytest
import requests
import yaml

import accounts as acc
import pgtest

ATHLETE = 134815          # the Strava emulator's default athlete
OURA_USER = "user-123"    # the Oura emulator's default user


# --------------------------------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture
def env(daemon_factory, tmp_path):
    """make(vendor, name=..., vendor_extra=..., config_extra=..., extra_keys=..., start=True, **emulator options)
    -> (daemon, emulator, links key). Every daemon gets its own state directory and port; every
    emulator is stopped at teardown (daemons are killed by daemon_factory)."""
    emulators = []

    def make(vendor: str = "strava", name: str = "pulsegate", vendor_extra: dict | None = None,
             config_extra: dict | None = None, start: bool = True, subscribed: bool = True,
             extra_keys: tuple = (), **emu_options):
        port = pgtest.free_port()
        emu = acc.start_vendor(vendor, port, subscribed=subscribed, **emu_options)
        emulators.append(emu)
        key = acc.links_key()
        vendors = {vendor: acc.vendor_config(vendor, emu, **(vendor_extra or {}))}
        config = acc.accounts_config(tmp_path / name, port, key, vendors, **(config_extra or {}))
        config["api_keys"] += [k.entry() for k in extra_keys]
        daemon = daemon_factory(config, name=name)
        if start:
            daemon.start()
        return daemon, emu, key

    yield make
    for emu in emulators:
        emu.stop()


def token_requests(emu) -> int:
    """Requests that reached the emulator's token endpoint (code exchanges and refreshes)."""
    return emu.state(brief=True)["requests"].get(f"POST {emu.token_path}", 0)


def data_requests(emu) -> int:
    """Requests to the vendor's data API (not OAuth, not webhook subscriptions, not the control API)."""
    return sum(n for route, n in emu.state(brief=True)["requests"].items()
               if "/usercollection/" in route or "/activities" in route or route.endswith("/athlete"))


def the_connection(daemon, key, subject) -> dict:
    conns = acc.connections(daemon, key, subject)
    assert len(conns) == 1, conns
    return conns[0]


def status_of(daemon, key, subject) -> str:
    return the_connection(daemon, key, subject)["status"]


def row(daemon, connection_id: str) -> dict:
    cols = ("status", "status_reason", "refresh_in_flight_since", "refresh_due_at", "refresh_failures",
            "token_generation", "access_token", "refresh_token", "last_sync_at")
    [r] = acc.store_rows(daemon, f"SELECT {', '.join(cols)} FROM connection WHERE id = ?", (connection_id,))
    return dict(zip(cols, r))


def record_samples(daemon, record_id, metric: str | None = None) -> list[dict]:
    return [s for s in acc.samples(daemon, "strava") if s["source"].get("record_id") == str(record_id)
            and (metric is None or s["metric"] == metric)]


def wait_activity_samples(daemon, act: dict, timeout: float = 30) -> list[dict]:
    """Waits until every heart-rate point of the emulator's activity is in the file sink."""
    want = len(act["streams"]["heartrate"])

    def done():
        assert daemon.alive(), daemon.tail(40)
        return len(record_samples(daemon, act["id"], "heart_rate")) >= want
    pgtest.wait_until(done, timeout=timeout, message=lambda: (
        f"activity {act['id']}: {len(record_samples(daemon, act['id'], 'heart_rate'))} of {want} heart-rate "
        f"samples in the sink"))
    hr = sorted(record_samples(daemon, act["id"], "heart_rate"), key=lambda s: s["start"])
    assert [s["value"] for s in hr] == act["streams"]["heartrate"]
    return hr


def new_activity(emu, seconds: int = 60) -> dict:
    """An activity at Strava announced by its webhook; the daemon must answer the webhook 200."""
    act = emu.create_activity(ATHLETE, seconds=seconds, notify=True)
    assert act["webhook"] and act["webhook"]["status"] == 200, act["webhook"]
    return act


def link_ok(daemon, key, vendor, subject, emu) -> dict:
    r = acc.link(daemon, key, vendor, subject, emu)
    assert r.status_code == 200 and "connected" in r.text, r.text[:500]
    conn = the_connection(daemon, key, subject)
    assert conn["status"] == "active", conn
    return conn


def with_state(location: str, state: str | None) -> str:
    """The callback URL with its `state` replaced (None: removed)."""
    u = urlparse(location)
    q = [(k, v[0]) for k, v in parse_qs(u.query, keep_blank_values=True).items() if k != "state"]
    if state is not None:
        q.append(("state", state))
    return urlunparse(u._replace(query=urlencode(q)))


def assert_human_page(r: requests.Response, *phrases: str) -> None:
    """A refused callback without return_to: a small HTML page for a person, 400, no JSON, no trace."""
    assert r.status_code == 400, f"{r.status_code}: {r.text[:300]}"
    assert r.headers.get("Content-Type", "").startswith("text/html"), r.headers
    body = r.text
    assert body.lstrip().lower().startswith("<!doctype html"), body[:300]
    with pytest.raises(ValueError):
        json.loads(body)
    for leak in ("Traceback", "Fatal error", "fatalError", ".swift", "Error(", '"error"', "stack"):
        assert leak not in body, f"{leak!r} in the page shown to a person:\n{body}"
    assert "Strava not connected" in body, body
    for p in phrases:
        assert p in body, f"{p!r} not in the page:\n{body}"


def key_id(key_hex: str) -> bytes:
    """The 8-byte key id a sealed token starts with (after its version byte)."""
    return hashlib.sha256(bytes.fromhex(key_hex.strip())).digest()[:8]


def new_token_key(daemon, path) -> str:
    """`pulsegate tokens new-key` written to `path` (0600); returns the hex."""
    # `tokens new-key` takes no --config (it reads none), so not daemon.cli(), which always passes one.
    p = pgtest.run_cli(daemon.binary, "tokens", "new-key")
    assert p.returncode == 0, pgtest.cli_result(p)
    hex_key = p.stdout.strip()
    assert len(hex_key) == 64 and int(hex_key, 16) >= 0, hex_key
    path.write_text(hex_key + "\n")
    path.chmod(0o600)
    return hex_key


# --------------------------------------------------------------------------------------------------
# 1. OAuth states


def test_refused_states_show_a_page_and_never_reach_the_token_endpoint(env):
    """Reused, forged, missing, expired and denied authorizations end on a small HTML page (400) that
    says what happened, create no connection, and — the code exchange being the expensive,
    grant-creating step — never reach the vendor's token endpoint. The authorize API answers JSON
    errors: 403 without the links:create scope, 404 for an unknown or unconfigured vendor."""
    writer = pgtest.ApiKey(name="writer", scopes=("samples:write",))
    daemon, emu, key = env("strava", extra_keys=(writer,))
    short, _, short_key = env("strava", name="short", config_extra={"accounts": {"state_ttl_seconds": 1}})

    # An authorize URL used twice: the first completes, the second is refused without an exchange.
    r = acc.authorize(daemon, key, "strava", "m-reuse")
    assert r.status_code == 201, r.text
    url = r.json()["authorize_url"]
    first = requests.get(emu.consent(url), allow_redirects=False, timeout=30)
    assert first.status_code == 200 and "Strava connected" in first.text, first.text
    exchanges = token_requests(emu)
    assert exchanges == 1
    second = requests.get(emu.consent(url), allow_redirects=False, timeout=30)
    assert_human_page(second, "already used")
    assert token_requests(emu) == exchanges, "a reused state reached the token endpoint"
    assert len(acc.connections(daemon, key, "m-reuse")) == 1

    # A forged state (and none at all) with a real code from the vendor: refused, code not exchanged.
    r = acc.authorize(daemon, key, "strava", "m-forged")
    real = emu.consent(r.json()["authorize_url"])
    forged = requests.get(with_state(real, "forged-" + "A" * 40), allow_redirects=False, timeout=30)
    assert_human_page(forged, "not valid")
    missing = requests.get(with_state(real, None), allow_redirects=False, timeout=30)
    assert_human_page(missing, "incomplete")
    assert token_requests(emu) == exchanges, "a forged state reached the token endpoint"
    assert acc.connections(daemon, key, "m-forged") == []

    # The person clicks Deny at Strava.
    r = acc.authorize(daemon, key, "strava", "m-deny")
    denied_location = emu.consent(r.json()["authorize_url"], allow=False)
    assert "error=access_denied" in denied_location
    denied = requests.get(denied_location, allow_redirects=False, timeout=30)
    assert_human_page(denied, "did not allow access")
    assert acc.connections(daemon, key, "m-deny") == []

    # An authorize URL older than accounts.state_ttl_seconds (1 s).
    r = acc.authorize(short, short_key, "strava", "m-expired")
    assert r.status_code == 201, r.text
    expires_at = datetime.fromisoformat(r.json()["expires_at"].replace("Z", "+00:00"))
    assert expires_at - datetime.now(timezone.utc) <= timedelta(seconds=2), r.json()
    time.sleep(2)
    expired = requests.get(emu.consent(r.json()["authorize_url"]), allow_redirects=False, timeout=30)
    assert_human_page(expired, "expired")
    assert acc.connections(short, short_key, "m-expired") == []
    assert token_requests(emu) == exchanges, "a refused state reached the token endpoint"

    # The authorize API: JSON errors.
    no_scope = requests.post(daemon.url("/v1/connections/authorize"), json={"vendor": "strava", "subject": "x"},
                             headers={"Authorization": f"Bearer {writer.key}"}, timeout=10)
    pgtest.assert_error_body(no_scope, 403)
    unknown = acc.authorize(daemon, key, "nope", "x")
    assert pgtest.assert_error_body(unknown, 404)["code"] == "unknown_vendor"
    unconfigured = acc.authorize(daemon, key, "polar", "x")
    assert pgtest.assert_error_body(unconfigured, 404)["code"] == "unknown_vendor"
    assert acc.connections(daemon, key, "x") == []

    kinds = [e["event"] for e in acc.events(daemon)]
    assert kinds.count("connection.linked") == 1, kinds
    assert acc.metric_value(daemon, "pulsegate_links_total", vendor="strava", outcome="reused_state") == 1
    assert acc.metric_value(daemon, "pulsegate_links_total", vendor="strava", outcome="unknown_state") == 1
    assert acc.metric_value(daemon, "pulsegate_links_total", vendor="strava", outcome="access_denied") == 1


def test_refused_states_redirect_to_return_to(env):
    """With `return_to`, every refusal of a link that has a known state goes back to the app as a 303 with
    pulsegate_link=failed, pulsegate_vendor and pulsegate_reason (README, HTTP API), so the app can tell
    the person — denied, expired and reused alike. A forged state has no return_to to go back to, so it
    is a page. All mismatches are collected and reported together."""
    daemon, emu, key = env("strava")
    short, _, short_key = env("strava", name="short", config_extra={"accounts": {"state_ttl_seconds": 1}})
    app = "https://app.example.test/after-link?tab=devices"
    problems = []

    def check(name: str, r: requests.Response, reason: str | None) -> None:
        loc = r.headers.get("Location", "")
        q = acc.callback_query(r)
        want = {"pulsegate_link": "failed" if reason else "connected", "pulsegate_vendor": "strava", "tab": "devices"}
        if reason:
            want["pulsegate_reason"] = reason
        got = {k: q.get(k) for k in want}
        if r.status_code != 303 or not loc.startswith("https://app.example.test/after-link?") or got != want:
            problems.append(f"{name}: {r.status_code} Location={loc!r} body={r.text[:120]!r}; wanted 303 with {want}")

    # connected (the positive control)
    r = acc.authorize(daemon, key, "strava", "r-ok", return_to=app)
    url = r.json()["authorize_url"]
    check("connected", requests.get(emu.consent(url), allow_redirects=False, timeout=30), None)
    exchanges = token_requests(emu)

    # denied
    r = acc.authorize(daemon, key, "strava", "r-deny", return_to=app)
    check("denied", requests.get(emu.consent(r.json()["authorize_url"], allow=False), allow_redirects=False,
                                 timeout=30), "access_denied")

    # reused
    check("reused", requests.get(emu.consent(url), allow_redirects=False, timeout=30), "reused_state")

    # expired
    r = acc.authorize(short, short_key, "strava", "r-expired", return_to=app)
    time.sleep(2)
    check("expired", requests.get(emu.consent(r.json()["authorize_url"]), allow_redirects=False, timeout=30),
          "expired_state")

    assert token_requests(emu) == exchanges, "a refused state reached the token endpoint"
    assert acc.connections(daemon, key, "r-deny") == [] and acc.connections(short, short_key, "r-expired") == []
    assert not problems, "refusals that did not go back to return_to:\n" + "\n".join(problems)


# --------------------------------------------------------------------------------------------------
# 2. a refresh token rotated away at a strict vendor


def test_refresh_token_rotated_elsewhere_needs_relink_without_hammering(env):
    """Oura with strictly single-use refresh tokens (no overlap, reuse locks the user out). Right after
    linking, someone else (a leaked copy, a second deployment) uses the daemon's refresh token at Oura's
    token endpoint, so the one the daemon holds is dead. When its refresh comes due, Oura refuses it
    (invalid_grant): the connection must become needs_relink with the reason, the event must reach the
    sink, and afterwards the daemon must leave the vendor alone (no more token or data calls)."""
    daemon, emu, key = env("oura", access_ttl_s=95, previous_refresh_valid_until_used=False,
                           lockout_on_reuse=True)
    conn = link_ok(daemon, key, "oura", "ring-1", emu)

    live = [t for t, rt in emu.refresh_tokens.items()
            if rt.state == "active" and rt.grant.user == OURA_USER and not rt.grant.revoked]
    assert len(live) == 1, "the daemon holds the one refresh token of the grant"
    r = requests.post(emu.url(emu.token_path), timeout=10, data={
        "grant_type": "refresh_token", "refresh_token": live[0],
        "client_id": acc.CLIENT_ID, "client_secret": acc.CLIENT_SECRET})
    assert r.status_code == 200 and r.json()["refresh_token"] != live[0], r.text
    assert row(daemon, conn["id"])["refresh_in_flight_since"] is None

    pgtest.wait_until(lambda: status_of(daemon, key, "ring-1") != "active", timeout=45,
                      message="the dead refresh token did not end the connection")
    conn = the_connection(daemon, key, "ring-1")
    assert conn["status"] == "needs_relink", conn
    assert "invalid_grant" in (conn.get("status_reason") or ""), conn
    assert "interrupted" not in conn["status_reason"], conn
    r_ = row(daemon, conn["id"])
    assert r_["access_token"] is None and r_["refresh_token"] is None and r_["refresh_due_at"] is None, r_

    pgtest.wait_until(lambda: acc.events(daemon, "connection.needs_relink"), timeout=10)
    [ev] = acc.events(daemon, "connection.needs_relink")
    assert ev["subject"] == "ring-1" and ev["source"]["vendor"] == "oura", ev
    assert "invalid_grant" in ev.get("reason", ""), ev
    user = emu.state(user=OURA_USER)["user"]
    assert user["refresh_reuse"] == 1, f"the dead token was presented {user['refresh_reuse']} times: {user}"

    # No hammering: nothing more reaches the token endpoint or the data API.
    tokens, data = token_requests(emu), data_requests(emu)
    time.sleep(8)
    assert token_requests(emu) == tokens, "the daemon kept calling the token endpoint after needs_relink"
    assert data_requests(emu) == data, "the daemon kept calling the data API after needs_relink"
    assert emu.state(user=OURA_USER)["user"]["refresh_reuse"] == 1
    assert status_of(daemon, key, "ring-1") == "needs_relink"
    assert acc.metric_value(daemon, "pulsegate_token_refreshes_total", vendor="oura", outcome="grant_rejected") == 1


# --------------------------------------------------------------------------------------------------
# 3. the vendor down for a long time


DOWN_SECONDS = 40


def test_vendor_down_for_long_keeps_connection_and_recovers(env):
    """Strava answers 500 to everything for a long time ("an hour" in production, compressed here to
    DOWN_SECONDS with 70-second access tokens, long enough for several refresh attempts and for the access
    token to come close to expiry). The connection must stay active throughout (a 5xx is never the user's
    fault), the failures must show in /metrics (token refreshes with outcome "transient") and in the
    connection's status_reason, and the daemon must stay healthy. Once Strava is back, a webhook-announced
    activity is fetched: the token is refreshed on the way and the samples arrive."""
    daemon, emu, key = env("strava", access_ttl_s=70)
    conn = link_ok(daemon, key, "strava", "m-down", emu)
    emu.configure(down=True)
    down_at = time.monotonic()
    served_before = emu.state(brief=True)["refreshes_served"]   # a refresh right after the link is possible

    saw_reason = False
    while time.monotonic() - down_at < DOWN_SECONDS:
        c = the_connection(daemon, key, "m-down")
        assert c["status"] == "active", f"vendor outage ended the connection: {c}"
        saw_reason = saw_reason or bool(c.get("status_reason"))
        assert daemon.get("/healthz").status_code == 200
        time.sleep(1)
    transient = acc.metric_value(daemon, "pulsegate_token_refreshes_total", vendor="strava", outcome="transient")
    assert transient >= 2, f"only {transient} failed refresh attempts in {DOWN_SECONDS} s of outage"
    assert saw_reason, "the refresh failures are not visible in the connection's status_reason"
    assert daemon.get("/readyz").status_code == 200
    assert not acc.events(daemon, "connection.needs_relink")
    assert row(daemon, conn["id"])["refresh_failures"] >= 2

    emu.configure(down=False)
    act = new_activity(emu)
    wait_activity_samples(daemon, act, timeout=45)
    assert emu.state(brief=True)["refreshes_served"] > served_before, "the samples came with a refreshed token"
    c = the_connection(daemon, key, "m-down")
    assert c["status"] == "active" and c.get("status_reason") is None, c
    assert emu.state(brief=True)["locked_out"] == []
    assert not acc.events(daemon, "connection.needs_relink")


# --------------------------------------------------------------------------------------------------
# 4. SIGKILL in the middle of a refresh


def _kill_during_refresh(env, strict: bool):
    """Links with a 61-second access token (refresh due at once) at a Strava that holds every token
    answer 5 s; SIGKILLs the daemon once Strava has rotated the tokens and is holding the answer; then
    restarts it (answers no longer held, later tokens long-lived) and announces an activity."""
    options = dict(access_ttl_s=61, hold_token_response_s=5)
    if strict:
        options.update(previous_refresh_valid_until_used=False, lockout_on_reuse=True)
    daemon, emu, key = env("strava", **options)
    conn = link_ok(daemon, key, "strava", "m-crash", emu)   # the code exchange is held 5 s too
    pgtest.wait_until(lambda: emu.state(brief=True)["refreshes_served"] >= 1, timeout=20, interval=0.05,
                      message="the daemon never sent its refresh")
    daemon.kill()
    served = emu.state(brief=True)["refreshes_served"]
    assert served == 1, served
    journal = row(daemon, conn["id"])
    assert journal["refresh_in_flight_since"] is not None, f"the refresh was not journaled: {journal}"
    emu.configure(hold_token_response_s=0, access_ttl_s=3600)
    daemon.start()
    return daemon, emu, key, conn


def test_sigkill_during_refresh_recovers_with_the_previous_token(env):
    """Lenient vendor (the previous refresh token stays valid until the new pair is used): after the
    restart the daemon refreshes again with the token it still holds, Strava counts that as a retry,
    and the connection goes on with a working token — a webhook fetch delivers. Nobody is locked out."""
    daemon, emu, key, conn = _kill_during_refresh(env, strict=False)
    act = new_activity(emu)
    wait_activity_samples(daemon, act, timeout=45)

    user = emu.state(user=ATHLETE)["user"]
    assert user["refresh_retries"] >= 1, user
    assert user["refresh_reuse"] == 0 and not user["locked_out"], user
    c = the_connection(daemon, key, "m-crash")
    assert c["status"] == "active" and c.get("status_reason") is None, c
    assert row(daemon, conn["id"])["refresh_in_flight_since"] is None
    assert acc.metric_value(daemon, "pulsegate_token_refreshes_total", vendor="strava",
                            outcome="refreshed_after_interruption") >= 1
    assert not acc.events(daemon, "connection.needs_relink")


def test_sigkill_during_refresh_at_strict_vendor_needs_relink(env):
    """Strict vendor (single-use refresh tokens, no overlap): the answer lost with the killed process held
    the only valid token, so no client can recover. The daemon must say so — needs_relink with a reason
    naming the interrupted refresh, and the event in the sink — never stay silently active with a dead
    token."""
    daemon, emu, key, conn = _kill_during_refresh(env, strict=True)
    act = new_activity(emu)
    pgtest.wait_until(lambda: status_of(daemon, key, "m-crash") != "active", timeout=45,
                      message="the connection stayed active with a dead refresh token")
    c = the_connection(daemon, key, "m-crash")
    assert c["status"] == "needs_relink", c
    assert "interrupted refresh" in (c.get("status_reason") or ""), c
    pgtest.wait_until(lambda: acc.events(daemon, "connection.needs_relink"), timeout=10)
    [ev] = acc.events(daemon, "connection.needs_relink")
    assert ev["subject"] == "m-crash" and "interrupted refresh" in ev.get("reason", ""), ev
    assert record_samples(daemon, act["id"]) == []
    user = emu.state(user=ATHLETE)["user"]
    assert user["refresh_reuse"] == 1 and user["refresh_retries"] == 0, user
    tokens = token_requests(emu)
    time.sleep(3)
    assert token_requests(emu) == tokens, "the daemon kept refreshing a connection that needs re-linking"


# --------------------------------------------------------------------------------------------------
# 5. silence watchdog


def test_silence_watchdog_reconciles_by_polling(env):
    """Strava stops sending webhooks (`silent`: an outage or a lapsed subscription). With
    silence_hours 0.0005 (1.8 s) and a 1-second watchdog, an activity created without any webhook still
    reaches the sink through the reconcile poll. No backfill (backfill_days 0), so nothing but the
    reconcile can have found it."""
    daemon, emu, key = env("strava", silent=True,
                           vendor_extra={"silence_hours": 0.0005, "backfill_days": 0},
                           config_extra={"accounts": {"watchdog_interval_seconds": 1}})
    link_ok(daemon, key, "strava", "m-quiet", emu)
    # Within the hour before the link: the reconcile lists from the last sync (or the link) less an hour.
    act = emu.create_activity(ATHLETE, start=int(time.time()) - 600, seconds=60, notify=True)
    assert act["webhook"].get("silenced") is True, act["webhook"]

    wait_activity_samples(daemon, act, timeout=30)
    hooks = emu.state(brief=True)["webhooks"]
    assert hooks["delivered"] == 0 and hooks["silenced"] >= 1, hooks
    assert acc.metric_value(daemon, "pulsegate_vendor_jobs_total", vendor="strava", outcome="reconcile_queued") >= 1
    c = the_connection(daemon, key, "m-quiet")
    assert c["status"] == "active" and c.get("last_webhook_at") is None and c.get("last_sync_at"), c


# --------------------------------------------------------------------------------------------------
# 6. rate limit


def test_rate_limited_vendor_delays_jobs_without_unlinking(env):
    """Strava answers 429 with Retry-After: 2 to everything while a webhook announces an activity: the
    fetch is retried (vendor_jobs_total{outcome="rate_limited"}), honouring Retry-After, and the
    connection stays active. When the limit lifts, the samples arrive."""
    daemon, emu, key = env("strava", vendor_extra={"backfill_days": 0})
    link_ok(daemon, key, "strava", "m-429", emu)
    emu.configure(rate_limited=True, retry_after_s=2)
    limited_at = time.monotonic()
    act = new_activity(emu)

    pgtest.wait_until(lambda: acc.metric_value(daemon, "pulsegate_vendor_jobs_total", vendor="strava",
                                               outcome="rate_limited") >= 2, timeout=20,
                      message="the fetch was not retried after 429")
    limited_for = time.monotonic() - limited_at
    fetches = emu.state(brief=True)["requests"].get("GET /api/v3/activities/{id}", 0)
    assert fetches <= limited_for / 2 + 2, f"{fetches} fetches in {limited_for:.1f} s despite Retry-After: 2"
    assert record_samples(daemon, act["id"]) == []
    c = the_connection(daemon, key, "m-429")
    assert c["status"] == "active", c

    emu.configure(rate_limited=False)
    wait_activity_samples(daemon, act, timeout=30)
    assert the_connection(daemon, key, "m-429")["status"] == "active"
    assert not acc.events(daemon, "connection.needs_relink")
    assert acc.metric_value(daemon, "pulsegate_vendor_jobs_total", vendor="strava", outcome="done") >= 1


# --------------------------------------------------------------------------------------------------
# 7. token key rotation


def test_token_key_rotation_and_missing_key(env, tmp_path):
    """Tokens at rest are sealed with tokens.key_file (default: state/token.key).

    1. Link with the default key.
    2. Start with only a new key (no previous_key_files), as after a botched rotation: the daemon must
       start, not crash, not unlink; the refresh fails with a key error in the log, the connection stays
       active with the reason, the webhook fetch delivers nothing, nothing reaches Strava's token endpoint.
    3. Start with the new key and the old one under previous_key_files: the tokens are re-sealed with the
       new key (the stored ciphertexts change and carry the new key's id), and a webhook fetch delivers.
    4. Start with only the new key again: now everything opens with it.
    """
    daemon, emu, key = env("strava", access_ttl_s=61, vendor_extra={"backfill_days": 0})
    conn = link_ok(daemon, key, "strava", "m-key", emu)
    assert daemon.stop() == 0
    old_hex = (daemon.state_dir / "token.key").read_text().strip()
    before = row(daemon, conn["id"])
    assert before["access_token"][1:9] == key_id(old_hex) and before["refresh_token"][1:9] == key_id(old_hex)

    new_path = tmp_path / "token-new.key"
    new_hex = new_token_key(daemon, new_path)
    assert key_id(new_hex) != key_id(old_hex)

    # 2. only the new key
    daemon.config["tokens"] = {"key_file": str(new_path)}
    daemon.write_config()
    tokens = token_requests(emu)
    daemon.start()
    pgtest.wait_until(lambda: "cannot open a refresh token" in daemon.stderr_text(), timeout=20,
                      message="no key error in the log")
    lost = new_activity(emu)
    pgtest.wait_until(lambda: acc.store_rows(
        daemon, "SELECT COUNT(*) FROM job WHERE last_error LIKE '%token key%'")[0][0] >= 1, timeout=20,
        message="the fetch did not fail on the token key")
    assert daemon.alive() and daemon.get("/healthz").status_code == 200
    c = the_connection(daemon, key, "m-key")
    assert c["status"] == "active" and "token key" in (c.get("status_reason") or ""), c
    assert row(daemon, conn["id"])["access_token"] == before["access_token"], "re-sealed without the old key?"
    assert record_samples(daemon, lost["id"]) == []
    assert token_requests(emu) == tokens, "a refresh was sent without an opened refresh token"
    assert not acc.events(daemon, "connection.needs_relink")
    assert daemon.stop() == 0

    # 3. new key + the old one as previous
    daemon.config["tokens"] = {"key_file": str(new_path),
                               "previous_key_files": [str(daemon.state_dir / "token.key")]}
    daemon.write_config()
    emu.configure(access_ttl_s=3600)
    daemon.start()
    pgtest.wait_until(lambda: row(daemon, conn["id"])["refresh_token"][1:9] == key_id(new_hex), timeout=20,
                      message="tokens were not re-sealed with the new key")
    after = row(daemon, conn["id"])
    assert after["access_token"] != before["access_token"] and after["refresh_token"] != before["refresh_token"]
    assert after["access_token"][1:9] == key_id(new_hex)
    act = new_activity(emu)
    wait_activity_samples(daemon, act, timeout=30)
    assert daemon.stop() == 0

    # 4. the old key retired
    daemon.config["tokens"] = {"key_file": str(new_path)}
    daemon.write_config()
    daemon.start()
    act2 = new_activity(emu)
    wait_activity_samples(daemon, act2, timeout=30)
    c = the_connection(daemon, key, "m-key")
    assert c["status"] == "active", c
    assert not acc.events(daemon, "connection.needs_relink")


def test_token_key_rotation_keeps_the_polar_webhook_key(env, tmp_path):
    """The same rotation, finished (new key + previous, restart, then the previous key retired), must not
    lose the other secret sealed with the token key: the signature_secret_key Polar hands out once, when
    the daemon creates its webhook. Polar webhooks must still verify after the old key is gone."""
    daemon, emu, _ = env("polar", subscribed=False)
    assert "webhook" not in daemon.config["vendors"]["polar"], "the key must come from the webhook creation"
    pgtest.wait_until(lambda: emu.webhook_secret, timeout=20, message="the daemon did not create Polar's webhook")
    assert emu.send_webhook(event="EXERCISE", entity_id="before")["status"] == 200
    assert daemon.stop() == 0

    new_path = tmp_path / "token-new.key"
    new_token_key(daemon, new_path)
    daemon.config["tokens"] = {"key_file": str(new_path),
                               "previous_key_files": [str(daemon.state_dir / "token.key")]}
    daemon.write_config()
    daemon.start()
    assert emu.send_webhook(event="EXERCISE", entity_id="rotating")["status"] == 200
    assert daemon.stop() == 0

    daemon.config["tokens"] = {"key_file": str(new_path)}
    daemon.write_config()
    daemon.start()
    r = emu.send_webhook(event="EXERCISE", entity_id="after")
    assert r["status"] == 200, (
        f"Polar webhook answered {r['status']} once the previous token key was retired: the stored "
        f"signature_secret_key was not re-sealed with the new key\n" + daemon.tail(6))


# --------------------------------------------------------------------------------------------------
# 8. CLI


VENDORS = ("strava", "fitbit", "polar", "oura", "garmin", "wahoo", "suunto", "withings", "whoop")


def test_cli_vendors_config_check_and_replay(env, tmp_path, pulsegate_bin):
    """`pulsegate vendors --json` lists every adapter and which are configured; `config check` names
    the failing key and exits 78; `pulsegate replay` re-emits the same sample ids from kept raw payloads."""
    daemon, emu, key = env("strava", vendor_extra={"backfill_days": 0})

    p = daemon.cli("vendors", "--json")
    assert p.returncode == 0, pgtest.cli_result(p)
    rows = {v["id"]: v for v in json.loads(p.stdout)}
    assert set(rows) == set(VENDORS), rows.keys()
    assert {k: v["configured"] for k, v in rows.items()} == {v: v == "strava" for v in VENDORS}
    assert rows["strava"]["callback_url"] == daemon.url("/v1/oauth/strava/callback")
    assert rows["strava"]["webhook_url"] == daemon.url("/v1/webhooks/strava")

    def check(cfg: dict, name: str):
        path = tmp_path / name
        path.write_text(yaml.safe_dump(cfg))
        return pgtest.run_cli(pulsegate_bin, "config", "check", "--config", str(path))

    p = daemon.cli("config", "check")
    assert p.returncode == 0, pgtest.cli_result(p)
    bad = json.loads(json.dumps(daemon.config))
    bad["vendors"]["nope"] = {"client_id": "1", "client_secret": "s"}
    p = check(bad, "unknown-vendor.yaml")
    assert p.returncode == 78 and "vendors.nope" in p.stderr, pgtest.cli_result(p)
    bad = json.loads(json.dumps(daemon.config))
    del bad["vendors"]["strava"]["client_id"]
    p = check(bad, "no-client-id.yaml")
    assert p.returncode == 78 and "vendors.strava.client_id" in p.stderr, pgtest.cli_result(p)

    # replay: fetch once, then map the kept raw payload again
    link_ok(daemon, key, "strava", "m-replay", emu)
    since = (datetime.now(timezone.utc) - timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    act = new_activity(emu)
    wait_activity_samples(daemon, act)
    fetched = record_samples(daemon, act["id"])
    ids = sorted(s["id"] for s in fetched)
    assert len(set(ids)) == len(ids)

    p = daemon.cli("replay", "--vendor", "strava", "--since", since)
    assert p.returncode == 0, pgtest.cli_result(p)
    assert f"into {len(ids)} samples" in p.stdout, pgtest.cli_result(p)
    pgtest.wait_until(lambda: len(record_samples(daemon, act["id"])) >= 2 * len(ids), timeout=20,
                      message=lambda: f"{len(record_samples(daemon, act['id']))} lines after the replay, "
                                      f"wanted {2 * len(ids)}")
    again = record_samples(daemon, act["id"])
    assert sorted(s["id"] for s in again) == sorted(ids * 2), "replay produced other ids"
    by_id = {}
    for s in again:
        by_id.setdefault(s["id"], []).append(s)
    assert all(a == b for a, b in by_id.values()), "a replayed sample differs from the fetched one"

    p = daemon.cli("replay", "--vendor", "strava", "--since", "yesterday")
    assert p.returncode == 64, pgtest.cli_result(p)
    p = daemon.cli("replay", "--vendor", "nope", "--since", since)
    assert p.returncode == 64, pgtest.cli_result(p)
