"""Withings end to end, through the real daemon and the Withings emulator.

Link through the consent page (the token answer wrapped in Withings' {status, body} envelope,
`action=requesttoken` in the form body), the notification subscriptions the daemon makes with the
user's token (Withings HEADs the callback first), form-encoded notifications → fetch → samples for measures
(value × 10^unit), intraday activity and sleep, all in UTC and valid against the schema; forged
notifications without the callback token refused without a trace; rotating refresh tokens; the user
unlinking at Withings (appli 46); unlink with the signed revoke (nonce + signature).
"""

from __future__ import annotations

import math

import pytest
import requests

import accounts as acc
import pgtest
from emulators import start_emulator
from test_accounts_vendors import (Env, assert_common, assert_sink_valid, assert_tokens_sealed, by_metric,
                                   forged_rejected, iso, parse_iso, unique, unlink_and_check, utc_midnight)

CALLBACK_TOKEN = "e2e-withings-callback-7f3a9e51"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
UID = 12345                   # the emulator's default user (vector A13)
MEASURE_ROUTE = "POST /measure"
INTRADAY_ROUTE = "POST /v2/measure"
SLEEP_ROUTE = "POST /v2/sleep"


@pytest.fixture
def withings(daemon_factory, tmp_path):
    """withings(emu_options=None, **vendor_config) -> Env: the emulator (no subscriptions yet: the
    daemon makes them at link) and a daemon with a file sink, no backfill and a callback token."""
    emus = []

    def make(emu_options: dict | None = None, **vendor_cfg) -> Env:
        port = pgtest.free_port()
        emu = start_emulator("withings", client_id=acc.CLIENT_ID, client_secret=acc.CLIENT_SECRET,
                             **(emu_options or {}))
        emus.append(emu)
        cfg = {"client_id": acc.CLIENT_ID, "client_secret": acc.CLIENT_SECRET, "urls": emu.urls(),
               "webhook": {"callback_token": CALLBACK_TOKEN}, "backfill_days": 0, **vendor_cfg}
        key = acc.links_key()
        daemon = daemon_factory(acc.accounts_config(tmp_path, port, key, {"withings": cfg}))
        daemon.start()
        return Env("withings", daemon, emu, key)

    yield make
    for emu in emus:
        emu.stop()


def link(env: Env, subject: str) -> dict:
    r = acc.link(env.daemon, env.key, "withings", subject, env.emu)
    assert r.status_code == 200, r.text[:500]
    assert "Withings connected" in r.text, r.text[:500]
    [conn] = acc.connections(env.daemon, env.key, subject)
    assert conn["status"] == "active" and conn["vendor"] == "withings", conn
    return conn


def callback_url(env: Env) -> str:
    return f"{env.webhook_url}?token={CALLBACK_TOKEN}"


def assert_delivered(result: dict) -> None:
    """Withings wants 200 within 2 seconds, at the first attempt here."""
    assert result is not None, "no subscription received the notification"
    assert result["status"] == 200 and result["attempts"] == 1 and result["latency_ms"] < 2000, result


def withings_samples(env: Env) -> list[dict]:
    return unique(acc.samples(env.daemon, "withings"))


def wait_for(env: Env, predicate, message: str):
    return pgtest.wait_until(predicate, timeout=25, message=lambda: f"{message}\n{env.daemon.tail(20)}")


# --------------------------------------------------------------------------------------------------


def test_link_subscriptions_notifications_samples_and_unlink(withings):
    env = withings()
    emu = env.emu
    conn = link(env, "member-withings")

    # The subscriptions were made at link with the user's token, each after Withings' HEAD check of
    # our callback (the emulator's default, as documented), answered by the adapter.
    assert emu.opt("callback_check_method") == "HEAD"
    subs = [s for s in emu.state(brief=True)["subscriptions"] if s["user"] == UID]
    assert sorted(s["appli"] for s in subs) == [1, 4, 16, 44, 46]
    assert all(s["callbackurl"] == callback_url(env) for s in subs), subs
    assert acc.metric_value(env.daemon, "pulsegate_webhooks_total", vendor="withings", outcome="handshake") == 5
    assert env.inbox_rows() == [], "a subscription check was stored as a notification"

    # Measures: a weighing (appli 1) and a blood-pressure reading (appli 4), value × 10^unit.
    t_weigh = utc_midnight(1) + 7 * 3600 + 12
    weight = emu.create_measure_group(UID, date=t_weigh, measures=[(1, 72500, -3), (6, 2245, -2), (5, 5621, -2)],
                                      model="Body+", notify=True)
    bp = emu.create_measure_group(UID, date=t_weigh + 600, measures=[(9, 89, 0), (10, 109, 0), (11, 88, 0)],
                                  model="BPM Core", notify=True)
    for made in (weight, bp):
        assert_delivered(made["webhook"])
        assert "token=" + CALLBACK_TOKEN in made["webhook"]["url"]

    def measured():
        got = withings_samples(env)
        return got if {str(weight["grpid"]), str(bp["grpid"])} <= {s["source"].get("record_id") for s in got} \
            else None

    got = wait_for(env, measured, "the measures did not arrive")
    assert_common(got, "member-withings", "withings")
    [kg] = by_metric(got, "body_weight")
    assert (kg["value"], kg["unit"], kg["start"]) == (72.5, "kg", iso(t_weigh)), kg
    assert kg["source"] == {"kind": "cloud", "vendor": "withings", "record_id": str(weight["grpid"]),
                            "device": {"manufacturer": "Withings", "model": "Body+"}}, kg
    [fat] = by_metric(got, "body_fat")
    assert math.isclose(fat["value"], 22.45) and fat["unit"] == "%" and fat.get("quality") == ["vendor_computed"]
    assert [(s["value"], s["unit"]) for s in by_metric(got, "blood_pressure_diastolic")] == [(89, "mm[Hg]")]
    assert [(s["value"], s["unit"]) for s in by_metric(got, "blood_pressure_systolic")] == [(109, "mm[Hg]")]
    [pulse] = by_metric(got, "heart_rate")
    assert (pulse["value"], pulse["start"], pulse["source"]["record_id"]) == (88, iso(t_weigh + 600), str(bp["grpid"]))
    assert len(got) == 5, "fat-free mass (type 5) has no metric and is not mapped"

    # Intraday activity (appli 16 names only the user's local day): minute heart rate and counts.
    t_walk = utc_midnight(1) + 9 * 3600
    walk = emu.create_intraday(UID, start=t_walk, minutes=20, notify=True)
    assert_delivered(walk["webhook"])
    entries = sorted((int(t), e) for t, e in walk["series"].items())

    def walked():
        got = withings_samples(env)
        return got if len(by_metric(got, "step_count")) == sum(1 for _, e in entries if e["steps"] > 0) \
            and len(by_metric(got, "heart_rate")) == 1 + len(entries) else None

    got = wait_for(env, walked, "the intraday activity did not arrive")
    heart = [s for s in by_metric(got, "heart_rate") if "record_id" not in s["source"]]
    assert [(s["start"], s["value"]) for s in heart] == [(iso(t), e["heart_rate"]) for t, e in entries]
    assert all(s["source"].get("device") == {"manufacturer": "Withings", "model": "ScanWatch"} for s in heart)
    steps = by_metric(got, "step_count")
    assert [(s["start"], s["end"], s["value"]) for s in steps] == \
        [(iso(t), iso(t + 60), e["steps"]) for t, e in entries if e["steps"] > 0]
    assert all(s["unit"] == "{steps}" for s in steps)
    energy = by_metric(got, "active_energy")
    assert energy and all(s["unit"] == "kcal" and s.get("quality") == ["vendor_computed"] for s in energy)
    # The local day is widened to every time zone, a day per call: three calls for one notification.
    wait_for(env, lambda: env.requests_to(INTRADAY_ROUTE) == 3, "not three intraday calls")

    # Sleep (appli 44 with the night's window): stages as intervals, heart rate and breathing readings.
    night = utc_midnight(1) - 2 * 3600
    sleep = emu.create_sleep(UID, start=night, seconds=4 * 3600, notify=True)
    assert_delivered(sleep["webhook"])
    segments = sleep["series"]

    def slept():
        got = withings_samples(env)
        return got if len(by_metric(got, "sleep_stage")) == len(segments) else None

    got = wait_for(env, slept, "the sleep did not arrive")
    names = {0: "awake", 1: "light", 2: "deep", 3: "rem"}
    stages = by_metric(got, "sleep_stage")
    assert [(s["start"], s["end"], s["value"]) for s in stages] == \
        [(iso(g["startdate"]), iso(g["enddate"]), names[g["state"]]) for g in segments]
    readings = sorted((int(t), v) for g in segments for t, v in g["hr"].items())
    night_hr = [s for s in by_metric(got, "heart_rate") if night <= parse_iso(s["start"]) < night + 4 * 3600]
    assert [(s["start"], s["value"]) for s in night_hr] == [(iso(t), v) for t, v in readings]
    assert len(by_metric(got, "respiratory_rate")) == len(readings)
    assert env.requests_to(SLEEP_ROUTE) == 1

    assert_common(withings_samples(env), "member-withings", "withings")
    assert_tokens_sealed(env)
    # Unlink: the signed revoke (getnonce, then revoke with the nonce) ends the tokens and the
    # subscriptions at Withings.
    unlink_and_check(env, conn, "member-withings", via="revoke")
    assert env.requests_to("POST /v2/signature") == 1
    assert [s for s in emu.state(brief=True)["subscriptions"] if s["user"] == UID] == []
    assert_sink_valid(env.daemon)


def test_forged_notifications_are_refused_and_checks_answered(withings):
    env = withings()
    link(env, "member-forged")
    measures = env.requests_to(MEASURE_ROUTE)
    body = f"userid={UID}&appli=1&startdate=1795132800&enddate=1795136400".encode()
    forged_rejected(env, [
        ("no token", body, FORM),
        ("wrong token in the body", body + b"&token=not-the-token", FORM),
        ("token of another length", body + b"&token=" + CALLBACK_TOKEN.encode() + b"x", FORM),
    ])
    r = requests.post(env.webhook_url, params={"token": CALLBACK_TOKEN[:-1] + "0"}, data=body, headers=FORM,
                      timeout=10)
    assert r.status_code == 401, r.text
    assert env.inbox_rows() == []

    # Callback checks (HEAD as Withings sends it, GET, an empty POST) answered 200, nothing stored.
    head = requests.head(callback_url(env), timeout=10)
    assert head.status_code == 200 and head.content == b"", head
    assert requests.head(env.webhook_url, timeout=10).status_code == 200, "a check needs no callback token"
    assert requests.get(callback_url(env), timeout=10).status_code == 200
    assert requests.post(callback_url(env), data=b"", timeout=10).status_code == 200
    assert env.inbox_rows() == []

    # The control: the token as subscribed, in the query → stored once, fetched once; an unknown
    # user's notification is stored but fetches nothing.
    r = requests.post(callback_url(env), data=body, headers=FORM, timeout=10)
    assert r.status_code == 200, r.text
    stranger = requests.post(callback_url(env), data=b"userid=999999&appli=1&startdate=1&enddate=2",
                             headers=FORM, timeout=10)
    assert stranger.status_code == 200
    wait_for(env, lambda: len(env.inbox_rows()) == 2 and all(done for _, done in env.inbox_rows())
             and env.requests_to(MEASURE_ROUTE) == measures + 1, "the notification was not processed")
    assert not acc.store_rows(env.daemon, "SELECT id FROM job")
    assert env.requests_to(MEASURE_ROUTE) == measures + 1


def test_rotating_refresh_tokens(withings):
    # A 61-second access token is refreshed at once; Withings answers a new refresh token every time.
    env = withings(emu_options={"access_ttl_s": 61})
    emu = env.emu
    conn = link(env, "member-rotation")
    first = next(t for t, rt in emu.refresh_tokens.items() if rt.parent is None and rt.grant.user == UID)
    wait_for(env, lambda: emu.state(brief=True)["refreshes_served"] >= 1, "no refresh")
    emu.configure(access_ttl_s=3600)
    wait_for(env, lambda: emu.refresh_tokens[first].state != "active", "the refresh token did not rotate")

    # Data flows with the new access token, whose first use retires the replaced refresh token.
    made = emu.create_measure_group(UID, measures=[(1, 80125, -3)], notify=True)
    assert_delivered(made["webhook"])
    wait_for(env, lambda: [s for s in acc.samples(env.daemon, "withings")
                           if s["source"].get("record_id") == str(made["grpid"])], "no samples after the refresh")
    assert emu.refresh_tokens[first].state == "dead"
    user = emu.state(user=UID)["user"]
    assert user["refresh_reuse"] == 0 and user["refresh_retries"] == 0 and user["refreshes"] >= 1, user
    # The old refresh token is refused the Withings way: HTTP 200 and an error status.
    r = requests.post(emu.urls()["token"], data={"action": "requesttoken", "grant_type": "refresh_token",
                                                 "refresh_token": first, "client_id": acc.CLIENT_ID,
                                                 "client_secret": acc.CLIENT_SECRET}, timeout=10)
    assert r.status_code == 200 and r.json()["status"] == 503, r.text
    assert "refresh_token" in r.json()["error"]
    [now] = acc.connections(env.daemon, env.key, "member-rotation")
    assert now["status"] == "active" and now["id"] == conn["id"], now
    assert not acc.events(env.daemon, "connection.needs_relink")
    assert_tokens_sealed(env)


def test_user_unlinking_at_withings_revokes_and_tombstones(withings):
    env = withings()
    link(env, "member-leaves")
    env.emu.revoke_user(UID)          # appli 46 action=unlink, then Withings forgets the subscriptions
    wait_for(env, lambda: acc.connections(env.daemon, env.key, "member-leaves")[0]["status"] == "revoked",
             "the unlink notification did not revoke the connection")
    tomb = [e for e in acc.events(env.daemon, "tombstone") if e["subject"] == "member-leaves"]
    assert tomb and "record_id" not in tomb[0]["source"], tomb
    assert [e for e in acc.events(env.daemon, "connection.revoked") if e["subject"] == "member-leaves"]
    assert_sink_valid(env.daemon)


def test_replayed_notification_is_fetched_once(withings):
    env = withings()
    link(env, "member-replay")
    made = env.emu.create_measure_group(UID, measures=[(1, 68250, -3)])
    result = env.emu.send_webhook(userid=UID, appli=1, startdate=made["date"], enddate=made["created"],
                                  duplicate=True)
    assert [d["status"] for d in result["deliveries"]] == [200, 200]
    assert result["deliveries"][0]["body"] == result["deliveries"][1]["body"]
    wait_for(env, lambda: [s for s in acc.samples(env.daemon, "withings")
                           if s["source"].get("record_id") == str(made["grpid"])], "no samples")
    wait_for(env, lambda: env.inbox_rows() and all(done for _, done in env.inbox_rows())
             and not acc.store_rows(env.daemon, "SELECT id FROM job"), "the notification was not processed")
    assert len(env.inbox_rows()) == 1
    assert acc.metric_value(env.daemon, "pulsegate_webhooks_total", vendor="withings", outcome="duplicate") == 1
    assert env.requests_to(MEASURE_ROUTE) == 1, "the data was fetched more than once"

