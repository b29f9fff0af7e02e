"""WHOOP end to end, through the real daemon and the WHOOP emulator.

Link through the consent page (the user id read from the basic profile); sleep, recovery and workout
webhooks → fetches → samples with WHOOP's values in canonical units and UTC, only for SCORED records;
deletions as tombstones; forged, stale and replayed webhooks; rotating refresh tokens at a strict
vendor; the backfill's paging and its recovery reads; WHOOP's rate-limit headers honoured; unlink
(revoked at WHOOP, which then stops the user's webhooks). Every sink line is validated against its
JSON Schema.

The helpers come from test_accounts_vendors.py and accounts.py; only the daemon config for WHOOP is
built here (accounts.py knows the four vendors it was written for).
"""

from __future__ import annotations

import base64
import json
import math
import time

import pytest

import accounts as acc
import pgtest
from emulators import start_emulator
from emulators import whoop as whoop_emu
from test_accounts_vendors import (Env, assert_common, assert_sink_valid, assert_tokens_sealed, by_metric,
                                   forged_rejected, iso, parse_iso, unique, unlink_and_check)

VENDOR = "whoop"
USER = whoop_emu.WhoopEmulator.default_user_id
SLEEP_ROUTE = "GET /developer/v2/activity/sleep/{sleep_id}"
RECOVERY_ROUTE = "GET /developer/v2/cycle/{cycle_id}/recovery"
WORKOUT_ROUTE = "GET /developer/v2/activity/workout/{workout_id}"


def whoop_config(emu, **extra) -> dict:
    """`vendors.whoop` for the daemon: the emulator's endpoints and our client."""
    base = emu.base_url
    cfg = {"client_id": acc.CLIENT_ID, "client_secret": acc.CLIENT_SECRET,
           "urls": {"authorize": f"{base}/oauth/oauth2/auth", "token": f"{base}/oauth/oauth2/token",
                    "api": f"{base}/developer"}}
    return pgtest._merge(cfg, extra)


class WhoopEnv(Env):
    def link(self, subject: str, user=None) -> dict:
        r = acc.link(self.daemon, self.key, VENDOR, subject, self.emu, user=user)
        assert r.status_code == 200, r.text[:500]
        assert "WHOOP connected" in r.text, r.text[:500]
        [conn] = acc.connections(self.daemon, self.key, subject)
        assert conn["status"] == "active" and conn["vendor"] == VENDOR, conn
        return conn

    def sign(self, body: bytes, ts: str | None = None) -> dict:
        ts = ts or str(int(time.time() * 1000))
        return {"X-WHOOP-Signature-Timestamp": ts, "X-WHOOP-Signature": whoop_emu.sign(acc.CLIENT_SECRET, ts, body)}

    def jobs_done(self) -> bool:
        return not acc.store_rows(self.daemon, "SELECT id FROM job") and all(
            done for _, done in self.inbox_rows())


@pytest.fixture
def whoop(daemon_factory, tmp_path):
    """make(emu_options=None, prepare=None, **vendor_config) -> WhoopEnv: the WHOOP emulator, whose
    dashboard webhook URL is the daemon's, and a daemon with a file sink linked to it (no backfill
    unless asked for)."""
    emus = []

    def make(emu_options: dict | None = None, prepare=None, **vendor_cfg) -> WhoopEnv:
        port = pgtest.free_port()
        emu = start_emulator(VENDOR, client_id=acc.CLIENT_ID, client_secret=acc.CLIENT_SECRET,
                             webhook_url=f"http://127.0.0.1:{port}/v1/webhooks/{VENDOR}", **(emu_options or {}))
        emus.append(emu)
        if prepare is not None:
            prepare(emu)
        key = acc.links_key()
        cfg = whoop_config(emu, **{"backfill_days": 0, **vendor_cfg})
        daemon = daemon_factory(acc.accounts_config(tmp_path, port, key, {VENDOR: cfg}))
        daemon.start()
        return WhoopEnv(VENDOR, daemon, emu, key)

    yield make
    for emu in emus:
        emu.stop()


def delivered(result: dict | None) -> None:
    """WHOOP counts any 2xx as delivered; the daemon answers 200 at once."""
    assert result is not None, "the dashboard webhook URL received nothing"
    assert result["status"] == 200 and result["attempts"] == 1, result
    assert result["latency_ms"] < 10_000, result


def record_samples(env: Env, record_id: str) -> list[dict]:
    return unique([s for s in acc.samples(env.daemon, VENDOR) if s["source"].get("record_id") == record_id])


# --------------------------------------------------------------------------------------------------


def test_whoop_link_webhooks_samples_unlink(whoop):
    env = whoop()
    env.emu.create_user(20501, utc_offset_s=-5 * 3600)      # a member in New York: WHOOP still writes UTC
    conn = env.link("member-whoop", user=20501)
    [(vendor_user,)] = acc.store_rows(env.daemon, "SELECT vendor_user_id FROM connection WHERE id = ?", (conn["id"],))
    assert vendor_user == "20501", "the user id of WHOOP's notifications, from /v2/user/profile/basic"

    now = int(time.time())
    bedtime = now - 10 * 3600 + 0.25
    night = env.emu.create_sleep(20501, start=bedtime, seconds=7.5 * 3600, notify=True)
    for result in night["webhooks"]:
        delivered(result)
    sleep, recovery = night["sleep"], night["recovery"]
    assert sleep["timezone_offset"] == "-05:00" and sleep["end"].endswith("Z")
    assert recovery["sleep_id"] == sleep["id"] and recovery["cycle_id"] == sleep["cycle_id"]
    assert [json.loads(r["body"])["type"] for r in night["webhooks"]] == ["sleep.updated", "recovery.updated"]
    assert all(json.loads(r["body"])["id"] == sleep["id"] for r in night["webhooks"]), "v2: recovery named by sleep"

    pgtest.wait_until(lambda: len(record_samples(env, sleep["id"])) == 6, timeout=20,
                      message=lambda: f"{record_samples(env, sleep['id'])}\n{env.daemon.tail(20)}")
    got = record_samples(env, sleep["id"])
    assert_common(got, "member-whoop", VENDOR)
    assert all(s["quality"] == ["vendor_computed"] for s in got), got
    assert all(s["source"].get("device") == {"manufacturer": "WHOOP"} for s in got), got[0]
    start, end = parse_iso(sleep["start"]), parse_iso(sleep["end"])
    [stage] = by_metric(got, "sleep_stage")
    assert (stage["start"], stage["end"], stage["value"], stage["unit"]) == (iso(start), iso(end), "in_bed", "{stage}")
    assert not [s for s in got if s["metric"] == "sleep_stage" and s["value"] != "in_bed"], "no invented stages"
    score = recovery["score"]
    want = {"respiratory_rate": (sleep["score"]["respiratory_rate"], "/min"),
            "resting_heart_rate": (score["resting_heart_rate"], "/min"),
            "hrv_rmssd": (score["hrv_rmssd_milli"], "ms"), "spo2": (score["spo2_percentage"], "%"),
            "skin_temperature": (score["skin_temp_celsius"], "Cel")}
    for metric, (value, unit) in want.items():
        [s] = by_metric(got, metric)
        assert s["start"] == iso(end) and "end" not in s, s
        assert math.isclose(s["value"], value, rel_tol=1e-9) and s["unit"] == unit, (s, value)
    assert env.requests_to(RECOVERY_ROUTE) == 1
    assert not by_metric(acc.samples(env.daemon, VENDOR), "heart_rate"), "WHOOP has no heart-rate series"

    # A workout with a distance: one distance sample over its span; average/max heart rate map to nothing.
    run = env.emu.create_workout(20501, start=now - 3 * 3600, seconds=2700, sport_name="running", notify=True)
    delivered(run["webhook"])
    pgtest.wait_until(lambda: record_samples(env, run["id"]), timeout=20, message=lambda: env.daemon.tail(20))
    [dist] = record_samples(env, run["id"])
    assert (dist["metric"], dist["unit"], dist["start"], dist["end"]) == (
        "distance", "m", iso(parse_iso(run["start"])), iso(parse_iso(run["end"])))
    assert math.isclose(dist["value"], run["score"]["distance_meter"], rel_tol=1e-9)

    # Only SCORED records map: a pending workout gives nothing until WHOOP announces its score.
    pending = env.emu.create_workout(20501, start=now - 2 * 3600, seconds=1800, score_state="PENDING_SCORE",
                                     notify=True)
    delivered(pending["webhook"])
    pgtest.wait_until(lambda: env.requests_to(WORKOUT_ROUTE) == 2 and env.jobs_done(), timeout=20)
    assert record_samples(env, pending["id"]) == []
    scored = env.emu.update_record("workout", pending["id"], score_state="SCORED", notify=True)
    delivered(scored["webhook"])
    pgtest.wait_until(lambda: record_samples(env, pending["id"]), timeout=20, message=lambda: env.daemon.tail(20))
    assert record_samples(env, pending["id"])[0]["value"] == pytest.approx(scored["score"]["distance_meter"])

    # A nap: its bounds and respiratory rate, no recovery (WHOOP announces none).
    nap = env.emu.create_sleep(20501, start=now - 4 * 3600, seconds=1800, nap=True, notify=True)
    assert nap["recovery"] is None and len(nap["webhooks"]) == 1
    delivered(nap["webhooks"][0])
    pgtest.wait_until(lambda: len(record_samples(env, nap["sleep"]["id"])) == 2, timeout=20)
    assert sorted(s["metric"] for s in record_samples(env, nap["sleep"]["id"])) == ["respiratory_rate", "sleep_stage"]

    # The member deletes the night: sleep.deleted and recovery.deleted, tombstones for that record only.
    fetches = env.requests_to(SLEEP_ROUTE) + env.requests_to(RECOVERY_ROUTE)
    gone = env.emu.delete_sleep(sleep["id"])
    for result in gone["webhooks"]:
        delivered(result)
    tombs = pgtest.wait_until(lambda: (t := [e for e in acc.events(env.daemon, "tombstone")
                                             if e["source"].get("record_id") == sleep["id"]]) and len(t) == 2 and t,
                              timeout=15, message=lambda: env.daemon.tail(20))
    assert all(t["subject"] == "member-whoop" and t["source"]["vendor"] == VENDOR for t in tombs), tombs
    assert env.requests_to(SLEEP_ROUTE) + env.requests_to(RECOVERY_ROUTE) == fetches, "a deletion fetched"
    delivered(env.emu.delete_workout(run["id"])["webhooks"][0])
    pgtest.wait_until(lambda: [e for e in acc.events(env.daemon, "tombstone")
                               if e["source"].get("record_id") == run["id"]], timeout=15)

    assert_tokens_sealed(env)
    unlink_and_check(env, conn, "member-whoop", via="revoke")
    # Revoked at WHOOP: the member's data is no longer announced.
    after = env.emu.create_sleep(20501, notify=True)
    assert after["webhooks"] == [None, None]
    assert_sink_valid(env.daemon)


def test_whoop_webhook_security_and_replays(whoop):
    env = whoop()
    env.link("member-whoop-sec")
    night = env.emu.create_sleep(USER, seconds=6 * 3600)           # not announced: the tests below do it
    sleep_id = night["sleep"]["id"]
    body = whoop_emu.compact({"user_id": USER, "id": sleep_id, "type": "sleep.updated",
                              "trace_id": "e369c784-5100-49e8-8098-75d35c47b31b"})
    now_ms = str(int(time.time() * 1000))
    stale_ms = str(int(time.time() * 1000) - 3600 * 1000)
    seconds = str(int(time.time()))
    good = env.sign(body, now_ms)
    forged_rejected(env, [
        ("no signature", body, {"X-WHOOP-Signature-Timestamp": now_ms}),
        ("no timestamp", body, {"X-WHOOP-Signature": good["X-WHOOP-Signature"]}),
        ("wrong secret", body, {"X-WHOOP-Signature-Timestamp": now_ms,
                                "X-WHOOP-Signature": whoop_emu.sign("wrong-secret", now_ms, body)}),
        ("other timestamp", body, {"X-WHOOP-Signature-Timestamp": str(int(now_ms) - 1),
                                   "X-WHOOP-Signature": good["X-WHOOP-Signature"]}),
        ("stale", body, env.sign(body, stale_ms)),
        ("timestamp in seconds", body, env.sign(body, seconds)),
        ("other bytes", body.replace(b",", b", "), good),
        ("hex instead of base64", body, {"X-WHOOP-Signature-Timestamp": now_ms,
                                         "X-WHOOP-Signature": base64.b64decode(good["X-WHOOP-Signature"]).hex()}),
    ])
    labels = {l["outcome"] for n, l, v in env.daemon.metrics()
              if n == "pulsegate_webhooks_total" and l.get("vendor") == VENDOR and v > 0}
    assert {"rejected_missing_signature", "rejected_bad_signature", "rejected_stale"} <= labels, labels

    # The control: signed now → 200, stored once, fetched once.
    r = env.post_webhook(body, good)
    assert r.status_code == 200, r.text
    pgtest.wait_until(lambda: len(record_samples(env, sleep_id)) == 2 and env.jobs_done(), timeout=20,
                      message=lambda: env.daemon.tail(20))
    # WHOOP retries the same event (same type, id and trace_id): absorbed, nothing fetched again.
    r = env.post_webhook(body, env.sign(body))
    assert r.status_code == 200, r.text
    assert len(env.inbox_rows()) == 1
    assert acc.metric_value(env.daemon, "pulsegate_webhooks_total", vendor=VENDOR, outcome="duplicate") == 1
    # A later update of the same record is another event (another trace_id): taken and fetched.
    later = whoop_emu.compact({"user_id": USER, "id": sleep_id, "type": "sleep.updated",
                               "trace_id": "0b8f7c1e-2d3a-4e5f-8a9b-0c1d2e3f4a5b"})
    assert env.post_webhook(later, env.sign(later)).status_code == 200
    pgtest.wait_until(lambda: env.requests_to(SLEEP_ROUTE) == 2 and env.jobs_done(), timeout=20)
    assert len(env.inbox_rows()) == 2
    assert len(record_samples(env, sleep_id)) == 2, "the same values keep their ids"

    # A v1-model body (integer id) is WHOOP's, so it is taken, but it cannot be fetched from v2: kept as
    # failed and counted, never retried.
    v1 = whoop_emu.compact({"user_id": USER, "id": 10235, "type": "workout.updated",
                            "trace_id": "d3709ee7-104e-4f70-a928-2932964b017b"})
    assert env.post_webhook(v1, env.sign(v1)).status_code == 200
    pgtest.wait_until(lambda: acc.metric_value(env.daemon, "pulsegate_webhooks_total", vendor=VENDOR,
                                               outcome="unreadable") == 1, timeout=15)
    assert env.requests_to(WORKOUT_ROUTE) == 0
    assert_sink_valid(env.daemon)


def test_whoop_rotating_refresh_tokens_at_a_strict_vendor(whoop):
    # 61-second access tokens: every refresh is due at once. Refresh tokens strictly single-use, and a
    # dead one presented again locks the member out: the daemon must always use the newest.
    env = whoop(emu_options={"access_ttl_s": 61, "previous_refresh_valid_until_used": False,
                             "lockout_on_reuse": True})
    env.link("member-whoop-refresh")
    pgtest.wait_until(lambda: env.emu.state(user=USER)["user"]["refreshes"] >= 3, timeout=60,
                      message=lambda: f"{env.emu.state(user=USER)['user']}\n{env.daemon.tail(20)}")
    st = env.emu.state(user=USER)
    assert st["user"]["refresh_reuse"] == 0 and not st["user"]["locked_out"], st["user"]
    assert st["refresh_reuse"] == {} and st["locked_out"] == []
    # Every refresh returned a new refresh token; only the newest is alive.
    with env.emu.lock:
        live = [t for t, rt in env.emu.refresh_tokens.items() if rt.state == "active" and not rt.grant.revoked]
        issued = len(env.emu.refresh_tokens)
    assert len(live) == 1, live
    assert issued >= 4, "a new refresh token with every refresh"
    # Every refresh request carried scope=offline, as WHOOP's tutorials send it (one request may be in
    # flight while the state is read).
    scopes = st["refresh_scope_param"]
    assert scopes["none"] == 0 and scopes["other"] == 0, scopes
    assert 0 <= scopes["offline"] - st["refreshes_served"] <= 1, scopes
    conn = acc.connections(env.daemon, env.key, "member-whoop-refresh")[0]
    assert conn["status"] == "active", conn
    # The rotated tokens work: a workout announced now is fetched with one of them.
    run = env.emu.create_workout(USER, seconds=1200, sport_name="cycling", notify=True)
    delivered(run["webhook"])
    pgtest.wait_until(lambda: record_samples(env, run["id"]), timeout=20, message=lambda: env.daemon.tail(20))
    assert_tokens_sealed(env)


def test_whoop_backfill_pages_and_reads_each_nights_recovery(whoop):
    nights = 27
    made: list[dict] = []

    def prepare(emu):
        # Four weeks of nights, a nap and two workouts, all before the member links (so none announced).
        anchor = int(time.time()) - 86400          # every night over, the oldest 28 days back
        for d in range(nights - 1, -1, -1):
            made.append(emu.create_sleep(USER, start=anchor - d * 86400 - 8 * 3600, seconds=7 * 3600))
        made.append(emu.create_sleep(USER, start=anchor - 3 * 86400 + 6 * 3600, seconds=1200, nap=True))
        emu.create_workout(USER, start=anchor - 5 * 86400 + 9 * 3600, seconds=3600, sport_name="running")
        emu.create_workout(USER, start=anchor - 6 * 86400 + 9 * 3600, seconds=3600, sport_name="functional_fitness")

    env = whoop(prepare=prepare, backfill_days=30)
    env.link("member-whoop-backfill")
    sleeps = {m["sleep"]["id"] for m in made}

    def complete():
        got = unique(acc.samples(env.daemon, VENDOR))
        return (len(by_metric(got, "sleep_stage")) == nights + 1 and len(by_metric(got, "resting_heart_rate")) == nights
                and len(by_metric(got, "distance")) == 1)

    pgtest.wait_until(complete, timeout=60, message=lambda: (
        f"{env.emu.state(brief=True)['requests']}\n{env.daemon.tail(20)}"))
    got = unique(acc.samples(env.daemon, VENDOR))
    assert_common(got, "member-whoop-backfill", VENDOR)
    assert {s["source"]["record_id"] for s in by_metric(got, "sleep_stage")} == sleeps
    for m in made:
        if m["recovery"] is not None:
            [rhr] = [s for s in by_metric(got, "resting_heart_rate") if s["source"]["record_id"] == m["sleep"]["id"]]
            assert rhr["start"] == iso(parse_iso(m["sleep"]["end"]))
            assert rhr["value"] == m["recovery"]["score"]["resting_heart_rate"]
    requests = env.emu.state(brief=True)["requests"]
    # 28 sleeps in pages of at most 25: two listing requests; one recovery read per night, the sleep at hand.
    assert requests.get("GET /developer/v2/activity/sleep") == 2, requests
    assert requests.get("GET /developer/v2/activity/workout") == 1, requests
    assert requests.get(RECOVERY_ROUTE) == nights, requests
    assert requests.get(SLEEP_ROUTE, 0) == 0, requests
    assert env.emu.state()["rate_limited_answers"] == 0
    assert_sink_valid(env.daemon)


def test_whoop_rate_limit_headers_are_honoured(whoop):
    # Three requests a minute: the link takes one (the profile). WHOOP's headers say when nothing is
    # left; the daemon must wait for X-RateLimit-Reset instead of running into 429s.
    env = whoop(emu_options={"rate_limit_per_min": 3})
    env.link("member-whoop-limits")
    runs = []
    for i in range(4):
        # One at a time: parallel fetches would all leave before any answer said the budget is spent.
        run = env.emu.create_workout(USER, start=time.time() - (i + 2) * 3600, seconds=1800, notify=True)
        delivered(run["webhook"])
        runs.append(run)
        pgtest.wait_until(lambda: record_samples(env, run["id"]), timeout=90,
                          message=lambda: f"{env.emu.state(brief=True)['requests']}\n{env.daemon.tail(20)}")
    assert env.requests_to(WORKOUT_ROUTE) == 4
    assert env.emu.state()["rate_limited_answers"] == 0, "the daemon ran into WHOOP's limit"
    assert_sink_valid(env.daemon)
