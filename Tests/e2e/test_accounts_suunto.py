"""Suunto end to end, through the real daemon and the Suunto emulator (Tests/e2e/emulators/suunto.py).

Link through the consent page (the username comes from the JWT's `user` claim; a token without it is
refused), a signed WORKOUT_CREATED → the FIT file fetched with the subscription key → samples decoded
from it; 24/7 activity and sleep notifications mapped from their inline samples; recovery and route
notifications ignored; forged notifications refused without a trace; the backfill (workout listing and
24/7 fetches, deduplicating with later pushes); refresh-token rotation; a refused subscription key
never blamed on the user; unlink (deauthorized at Suunto, tombstone). Every sink line validates against
its JSON Schema.
"""

from __future__ import annotations

import json
import math
import time

import pytest
import requests

import accounts as acc
import pgtest
from emulators import start_emulator
from emulators import suunto as suunto_emu
from test_accounts_vendors import (Env, assert_common, assert_sink_valid, assert_tokens_sealed, by_metric,
                                   forged_rejected, iso, parse_iso, unique, unlink_and_check)

USER = "suuntouser1"                       # the emulator's default user (signature vector B5)
NOTIFICATION_SECRET = "e2e-notification-secret"
FIT_ROUTE = "GET /v3/workouts/{key}/fit"
DEADLINE_MS = 2000                         # Suunto waits 2 s for the answer


class SuuntoEnv(Env):
    def link(self, subject: str, user=None) -> dict:
        r = acc.link(self.daemon, self.key, "suunto", subject, self.emu, user=user)
        assert r.status_code == 200, r.text[:500]
        assert "Suunto connected" in r.text, r.text[:500]
        [conn] = acc.connections(self.daemon, self.key, subject)
        assert conn["status"] == "active" and conn["vendor"] == "suunto", conn
        return conn

    def send(self, **event) -> dict:
        result = self.emu.send_webhook(**event)
        assert_delivered(result)
        return result

    def jobs(self) -> list[tuple]:
        return acc.store_rows(self.daemon, "SELECT kind, last_error FROM job WHERE vendor = 'suunto'")


def assert_delivered(result: dict | None) -> None:
    """Suunto's delivery: 2xx at the first attempt, within its 2-second deadline."""
    assert result is not None, "no notification URL received the event"
    assert 200 <= (result["status"] or 0) < 300, result
    assert result["attempts"] == 1, result
    assert result["latency_ms"] < DEADLINE_MS, result


def suunto_config(emu, **extra) -> dict:
    cfg = {"client_id": acc.CLIENT_ID, "client_secret": acc.CLIENT_SECRET, "backfill_days": 0,
           "urls": {"authorize": emu.url("/oauth/authorize"), "token": emu.url("/oauth/token"),
                    "revoke": emu.url("/oauth/deauthorize"), "api": emu.base_url},
           "webhook": {"notification_secret": NOTIFICATION_SECRET,
                       "subscription_key": emu.opt("subscription_keys")[0]}}
    return pgtest._merge(cfg, extra)


@pytest.fixture
def suunto(daemon_factory, tmp_path):
    """make(emu_options=None, prepare=None, **vendor_config) -> SuuntoEnv: the emulator (delivering to the
    daemon's webhook URL, as configured in Suunto's portal) and a daemon with a file sink linked to it."""
    emus = []

    def make(emu_options: dict | None = None, prepare=None, **vendor_cfg) -> SuuntoEnv:
        port = pgtest.free_port()
        emu = start_emulator("suunto", client_id=acc.CLIENT_ID, client_secret=acc.CLIENT_SECRET,
                             webhook_url=f"http://127.0.0.1:{port}/v1/webhooks/suunto",
                             notification_secret=NOTIFICATION_SECRET, **(emu_options or {}))
        emus.append(emu)
        if prepare is not None:
            prepare(emu)
        key = acc.links_key()
        daemon = daemon_factory(acc.accounts_config(tmp_path, port, key, {"suunto": suunto_config(emu, **vendor_cfg)}))
        daemon.start()
        return SuuntoEnv("suunto", daemon, emu, key)

    yield make
    for emu in emus:
        emu.stop()


def workout_samples(env: SuuntoEnv, key: str) -> list[dict]:
    return unique([s for s in acc.samples(env.daemon, "suunto") if s["source"].get("record_id") == key])


def daily_samples(env: SuuntoEnv) -> list[dict]:
    """24/7 samples: they carry no record id."""
    return unique([s for s in acc.samples(env.daemon, "suunto") if "record_id" not in s["source"]])


def wait_workout(env: SuuntoEnv, workout: dict, heart_rates: int) -> list[dict]:
    key = workout["workoutKey"]
    pgtest.wait_until(lambda: len(by_metric(workout_samples(env, key), "heart_rate")) >= heart_rates, timeout=30,
                      message=lambda: f"{len(by_metric(workout_samples(env, key), 'heart_rate'))} of {heart_rates} "
                                      f"heart-rate samples of {key}\n{env.daemon.tail(30)}")
    return workout_samples(env, key)


# --------------------------------------------------------------------------------------------------


def test_suunto_link_workout_fit_and_247_pushes_then_unlink(suunto):
    env = suunto()
    conn = env.link("member-suunto")

    # A workout: the notification carries the summary and gear; the samples come from its FIT file.
    start = int(time.time()) - 3 * 3600
    hr = [110 + i for i in range(30)]
    hr[12] = None                                                   # a strap dropout: nothing emitted
    made = env.emu.create_workout(USER, start=start, hr_values=hr, speed_mps=2.5, notify=True)
    assert_delivered(made["webhook"])
    note = json.loads(made["webhook"]["body"])
    assert note["type"] == "WORKOUT_CREATED" and note["username"] == USER
    assert note["workout"]["workoutKey"] == made["workoutKey"] and note["gear"]["name"] == "Suunto Vertical"
    got = wait_workout(env, made, heart_rates=29)
    assert_common(got, "member-suunto", "suunto")
    heart = by_metric(got, "heart_rate")
    assert [(s["start"], s["value"]) for s in heart] == [(iso(start + i), v) for i, v in enumerate(hr) if v is not None]
    assert all(s["unit"] == "/min" for s in heart)
    speed = by_metric(got, "speed")
    assert len(speed) == 30 and all(s["value"] == 2.5 and s["unit"] == "m/s" for s in speed)
    distance = by_metric(got, "distance")
    assert [(s["start"], s["end"]) for s in distance] == [(iso(start + i), iso(start + i + 1)) for i in range(29)]
    assert all(math.isclose(s["value"], 2.5) and s["unit"] == "m" for s in distance)
    assert all(s["source"]["device"]["manufacturer"] == "suunto" for s in got), got[0]
    assert len(got) == len(heart) + len(speed) + len(distance)
    assert env.requests_to(FIT_ROUTE) == 1

    # 24/7 activity: samples inline, local times at +03:00; heart rate, SpO2 (a ratio) and HRV.
    t0 = (int(time.time()) - 7200) // 600 * 600
    activity = env.emu.create_samples(USER, kind="activity", start=t0, count=6, interval_s=600, utc_offset_s=10800,
                                      notify=True)
    assert_delivered(activity["webhook"])
    assert activity["samples"][0]["timestamp"].endswith("+03:00")
    pgtest.wait_until(lambda: len(by_metric(daily_samples(env), "heart_rate")) >= 6, timeout=20,
                      message=lambda: env.daemon.tail(30))
    daily = daily_samples(env)
    rows = [(iso(parse_iso(s["timestamp"])), s["entryData"]) for s in activity["samples"]]
    assert [(s["start"], s["value"]) for s in by_metric(daily, "heart_rate")] == [(t, e["HR"]) for t, e in rows]
    assert [(s["start"], s["value"]) for s in by_metric(daily, "spo2")] == \
        [(t, pytest.approx(e["SpO2"] * 100)) for t, e in rows if "SpO2" in e]
    assert all(s["unit"] == "%" for s in by_metric(daily, "spo2"))
    assert [(s["start"], s["value"]) for s in by_metric(daily, "hrv_rmssd")] == \
        [(t, e["HRV"]) for t, e in rows if "HRV" in e]
    assert not by_metric(daily, "step_count") and not by_metric(daily, "active_energy"), \
        "24/7 steps and energy have no documented interval: they must not be guessed into the schema"
    assert env.requests_to(FIT_ROUTE) == 1, "24/7 data came inline; nothing was to be fetched"

    # 24/7 sleep: the time in bed and the night's lowest heart rate at its end.
    night = int(time.time()) - 20 * 3600
    sleep = env.emu.create_samples(USER, kind="sleep", start=night, count=1, utc_offset_s=7200, notify=True)
    assert_delivered(sleep["webhook"])
    entry = sleep["samples"][0]["entryData"]
    pgtest.wait_until(lambda: by_metric(daily_samples(env), "resting_heart_rate"), timeout=20)
    [bed] = by_metric(daily_samples(env), "sleep_stage")
    assert (bed["start"], bed["end"], bed["value"], bed["quality"]) == (
        iso(parse_iso(entry["BedtimeStart"])), iso(parse_iso(entry["BedtimeEnd"])), "in_bed", ["vendor_computed"])
    [resting] = by_metric(daily_samples(env), "resting_heart_rate")
    assert (resting["start"], resting["value"], resting["unit"]) == (iso(parse_iso(entry["BedtimeEnd"])),
                                                                     entry["HRMin"], "/min")

    # Recovery (no metric in the schema) and a route (no measurement): accepted, nothing else happens.
    before = len(acc.samples(env.daemon, "suunto"))
    env.emu.create_samples(USER, kind="recovery", count=3, notify=True)
    env.send(type="ROUTE_CREATED", username=USER)
    pgtest.wait_until(lambda: env.inbox_rows() and all(done for _, done in env.inbox_rows()), timeout=15)
    time.sleep(1)
    assert len(acc.samples(env.daemon, "suunto")) == before
    assert env.jobs() == []

    assert_tokens_sealed(env)
    unlink_and_check(env, conn, "member-suunto", via="deauthorize")
    assert env.emu.state(user=USER)["user"]["revocations"] == 1
    assert_sink_valid(env.daemon)


def test_suunto_forged_notifications_are_refused(suunto):
    env = suunto()
    body = suunto_emu.compact({"type": "WORKOUT_CREATED", "username": USER,
                               "workout": {"workoutKey": "67604889401b942184624cb8"}})
    good = suunto_emu.sign(NOTIFICATION_SECRET, body)
    forged_rejected(env, [
        ("no signature", body, {}),
        ("wrong secret", body, {"X-HMAC-SHA256-Signature": suunto_emu.sign("not-the-secret", body)}),
        ("signature of other bytes", body + b" ", {"X-HMAC-SHA256-Signature": good}),
        ("re-serialized JSON", json.dumps(json.loads(body)).encode(), {"X-HMAC-SHA256-Signature": good}),
        ("not hex", body, {"X-HMAC-SHA256-Signature": "zz" * 32}),
    ])
    labels = {lbl["outcome"] for n, lbl, v in env.daemon.metrics()
              if n == "pulsegate_webhooks_total" and lbl.get("vendor") == "suunto" and v > 0}
    assert {"rejected_missing_signature", "rejected_bad_signature"} <= labels, labels
    # The emulator signing with another secret is refused the same way, at every retry.
    refused = env.emu.send_webhook(type="ROUTE_CREATED", username=USER, secret="someone-else")
    assert refused["status"] == 401 and not refused["delivered"], refused
    assert env.inbox_rows() == []

    # The controls: the same body correctly signed, and the legacy form notification, are accepted once each.
    r = env.post_webhook(body, {"X-HMAC-SHA256-Signature": good})
    assert r.status_code == 200, r.text
    env.send(type="WORKOUT_CREATED", username=USER, workout_key="67604889401b942184624cb8", legacy_form=True)
    r = env.post_webhook(body, {"X-HMAC-SHA256-Signature": good.upper()})
    assert r.status_code == 200, r.text
    assert len(env.inbox_rows()) == 2, "the replayed body was stored twice"


def test_suunto_backfill_lists_workouts_and_fetches_247_samples(suunto):
    now = int(time.time())
    made = {}

    def prepare(emu):
        made["recent"] = emu.create_workout(USER, start=now - 2 * 86400, seconds=20)
        made["older"] = emu.create_workout(USER, start=now - 5 * 86400, seconds=15)
        made["too_old"] = emu.create_workout(USER, start=now - 12 * 86400, seconds=10)
        made["activity"] = emu.create_samples(USER, kind="activity", start=(now - 86400) // 600 * 600, count=4,
                                              utc_offset_s=-18000)
        made["sleep"] = emu.create_samples(USER, kind="sleep", start=now - 3 * 86400, count=1, utc_offset_s=-18000)

    env = suunto(prepare=prepare, backfill_days=7)
    env.link("member-backfill")
    wait_workout(env, made["recent"], heart_rates=20)
    wait_workout(env, made["older"], heart_rates=15)
    pgtest.wait_until(lambda: len(by_metric(daily_samples(env), "heart_rate")) >= 4
                      and by_metric(daily_samples(env), "sleep_stage"), timeout=30,
                      message=lambda: env.daemon.tail(30))
    pgtest.wait_until(lambda: not env.jobs(), timeout=15, message=lambda: str(env.jobs()))
    assert workout_samples(env, made["too_old"]["workoutKey"]) == [], "a workout before the window was fetched"
    assert env.requests_to(FIT_ROUTE) == 2
    assert env.requests_to("GET /v3/workouts") >= 1
    assert env.requests_to("GET /247samples/{kind}") == 2                    # 7 days: one week of each kind
    daily = daily_samples(env)
    rows = made["activity"]["samples"]
    assert [(s["start"], s["value"]) for s in by_metric(daily, "heart_rate")] == \
        [(iso(parse_iso(r["timestamp"])), r["entryData"]["HR"]) for r in rows]
    assert_common(acc.samples(env.daemon, "suunto"), "member-backfill", "suunto")

    # The same samples pushed later carry the same ids: consumers see each reading once.
    ids = {s["id"] for s in daily}
    env.send(type="SUUNTO_247_ACTIVITY_CREATED", username=USER, samples=rows)
    pgtest.wait_until(lambda: env.inbox_rows() and all(done for _, done in env.inbox_rows()) and not env.jobs(),
                      timeout=15)
    time.sleep(1)
    assert {s["id"] for s in daily_samples(env)} == ids
    assert_sink_valid(env.daemon)


def test_suunto_refresh_rotates_and_keeps_the_connection_working(suunto):
    # Access tokens of 61 s: a refresh is due at once after the link, and again a minute later.
    env = suunto(emu_options={"access_ttl_s": 61})
    conn = env.link("member-refresh")
    pgtest.wait_until(lambda: env.emu.state(user=USER)["user"]["refreshes"] >= 1, timeout=40,
                      message=lambda: env.daemon.tail(30))
    state = env.emu.state(user=USER)["user"]
    assert state["refresh_reuse"] == 0 and not state["locked_out"], state
    # The refreshed JWT names the same user: notifications still find the connection, fetches use the new token.
    made = env.emu.create_workout(USER, seconds=12, notify=True)
    assert_delivered(made["webhook"])
    wait_workout(env, made, heart_rates=12)
    [current] = acc.connections(env.daemon, env.key, "member-refresh")
    assert current["id"] == conn["id"] and current["status"] == "active", current
    assert_tokens_sealed(env)
    assert_sink_valid(env.daemon)


def test_suunto_refused_subscription_key_is_never_blamed_on_the_user(suunto):
    env = suunto(webhook={"subscription_key": "not-our-key"})
    env.link("member-key")
    made = env.emu.create_workout(USER, seconds=10, notify=True)
    assert_delivered(made["webhook"])
    pgtest.wait_until(lambda: env.requests_to(FIT_ROUTE) >= 1 and any("subscription key" in (e or "")
                                                                      for _, e in env.jobs()),
                      timeout=20, message=lambda: f"{env.jobs()}\n{env.daemon.tail(30)}")
    [(kind, error)] = env.jobs()
    assert kind == "fetch" and not error.startswith("parked"), error
    [conn] = acc.connections(env.daemon, env.key, "member-key")
    assert conn["status"] == "active", conn
    assert workout_samples(env, made["workoutKey"]) == []
    assert env.emu.state(brief=True)["refreshes_served"] == 0, "the token was refreshed for the gateway's refusal"


def test_suunto_token_without_user_claim_is_refused(suunto):
    env = suunto(emu_options={"token_user_claim": False})
    r = acc.link(env.daemon, env.key, "suunto", "member-anon", env.emu)
    assert "Suunto not connected" in r.text, r.text[:500]
    assert acc.connections(env.daemon, env.key, "member-anon") == []
    assert acc.metric_value(env.daemon, "pulsegate_links_total", vendor="suunto", outcome="vendor_unavailable") == 1
    assert "user" in env.daemon.stderr_text() and "claim" in env.daemon.stderr_text()


def test_suunto_webhook_answers_within_the_deadline_even_for_large_pushes(suunto):
    env = suunto()
    env.link("member-large")
    big = env.emu.create_samples(USER, kind="activity", start=int(time.time()) - 14 * 86400, count=2000,
                                 interval_s=600, utc_offset_s=3600, notify=True)
    assert_delivered(big["webhook"])
    assert len(big["webhook"]["body"]) > 200_000
    pgtest.wait_until(lambda: len(by_metric(daily_samples(env), "heart_rate")) >= 2000, timeout=60,
                      message=lambda: f"{len(by_metric(daily_samples(env), 'heart_rate'))}\n{env.daemon.tail(20)}")
    assert requests.get(env.daemon.url("/healthz"), timeout=5).status_code == 200
    assert_sink_valid(env.daemon)


def test_suunto_device_fit_file_decodes_end_to_end(suunto):
    # A real watch's FIT file (garmin-fenix5-run-hrv.fit, see emulators/data/LICENSES.md): 21 records
    # from 2017-06-11T14:34:09Z (61 bpm) to 14:35:06Z (112 bpm), with R-R intervals.
    env = suunto()
    env.link("member-device")
    made = env.emu.create_workout(USER, fit_file="garmin-fenix5-run-hrv.fit", seconds=57, notify=True)
    assert_delivered(made["webhook"])
    pgtest.wait_until(lambda: env.inbox_rows() and all(done for _, done in env.inbox_rows()) and not env.jobs()
                      and workout_samples(env, made["workoutKey"]), timeout=30, message=lambda: env.daemon.tail(30))
    got = workout_samples(env, made["workoutKey"])
    heart = by_metric(got, "heart_rate")
    assert (heart[0]["start"], heart[0]["value"]) == ("2017-06-11T14:34:09.000Z", 61)
    assert (heart[-1]["start"], heart[-1]["value"]) == ("2017-06-11T14:35:06.000Z", 112)
    assert by_metric(got, "rr_interval"), "the file's HRV messages give R-R intervals"
    assert all(s["source"]["device"]["manufacturer"] == "garmin" for s in got)
    assert_common(got, "member-device", "suunto")
    assert_sink_valid(env.daemon)
