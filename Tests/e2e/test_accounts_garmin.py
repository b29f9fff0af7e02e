"""Garmin end to end, through the real daemon and the Garmin emulator (Health API + Activity API).

Link through the consent page (PKCE S256, no scopes, the user id and permissions read after the
exchange); pushed summaries of every mapped type → samples with Garmin's values in canonical units;
a push for an unknown user stored and ignored; notifications without our garmin-client-id (or URL key)
refused without a trace; ping mode: a summary callback and an activity FIT file fetched with the user's
token, TCX ignored, a callback on another host never fetched; deregistration and permission changes;
backfill only with HISTORICAL_DATA_EXPORT; refresh-token rotation; unlink (deregistration at Garmin,
tombstone). And the issue's must-show: a 10-hour activity pushed with 1-second samples flows through
with the daemon's peak memory following the body size, not the number of samples.

Every line the file sink holds is validated against the sample or the event JSON Schema.
"""

from __future__ import annotations

import dataclasses
import json
import math
import threading
import time
from collections import Counter
from datetime import datetime, timezone

import fitdecode
import pytest
import requests

import accounts as acc
import pgtest
from emulators import garmin as garmin_emu
from emulators import start_emulator
from test_accounts_vendors import (Env, _Recorder, assert_common, assert_sink_valid, assert_tokens_sealed, by_metric,
                                   forged_rejected, iso, unique, unlink_and_check, utc_midnight)

VENDOR = "garmin"
USER = garmin_emu.GarminEmulator.default_user_id


# --------------------------------------------------------------------------------------------------
# fixtures


def garmin_config(emu, **extra) -> dict:
    """`vendors.garmin` for the daemon: the emulator's endpoints and our client (no backfill by default)."""
    return pgtest._merge({"client_id": acc.CLIENT_ID, "client_secret": acc.CLIENT_SECRET, "backfill_days": 0,
                          "urls": {"authorize": emu.url(emu.authorize_path), "token": emu.url(emu.token_path),
                                   "api": emu.url("/wellness-api/rest")}}, extra)


@pytest.fixture
def garmin(daemon_factory, tmp_path):
    """garmin(name="pulsegate", webhook_query="", emu_options=None, **vendor_config) -> Env: a Garmin
    emulator whose endpoints all point at a fresh daemon's webhook URL (plus `webhook_query`)."""
    emus = []

    def make(name: str = "pulsegate", webhook_query: str = "", emu_options: dict | None = None, **vendor_cfg) -> Env:
        port = pgtest.free_port()
        emu = start_emulator(VENDOR, client_id=acc.CLIENT_ID, client_secret=acc.CLIENT_SECRET,
                             webhook_url=f"http://127.0.0.1:{port}/v1/webhooks/garmin{webhook_query}",
                             **(emu_options or {}))
        emus.append(emu)
        key = acc.links_key()
        daemon = daemon_factory(acc.accounts_config(tmp_path / name, port, key, {VENDOR: garmin_config(emu, **vendor_cfg)}),
                                name=name)
        daemon.start()
        return Env(VENDOR, daemon, emu, key)

    yield make
    for emu in emus:
        emu.stop()


def link(env: Env, subject: str, user=None, granted=None) -> dict:
    """The consent path (Garmin's permissions as the page's checkboxes); returns the active connection."""
    r = acc.link(env.daemon, env.key, VENDOR, subject, env.emu, user=user, granted_scope=granted)
    assert r.status_code == 200, r.text[:500]
    assert "Garmin connected" in r.text, r.text[:500]
    conn = next(c for c in acc.connections(env.daemon, env.key, subject) if c["vendor"] == VENDOR)
    assert conn["status"] == "active", conn
    return conn


def assert_delivered(result: dict | None) -> None:
    """Garmin's delivery: 200 at the first attempt, well within its 30-second wait."""
    assert result is not None, "nothing was delivered"
    assert result["status"] == 200, result
    assert result["attempts"] == 1, result
    assert result["latency_ms"] < 30_000, result


def garmin_samples(env: Env, record_id: str | None = None) -> list[dict]:
    return unique([s for s in acc.samples(env.daemon, VENDOR)
                   if record_id is None or s["source"].get("record_id") == record_id])


def offsets(values: dict, start: int) -> list[tuple[str, float]]:
    return [(iso(start + int(k)), float(v)) for k, v in sorted(values.items(), key=lambda kv: int(kv[0])) if v > 0]


def series(samples: list[dict], metric: str) -> list[tuple[str, float]]:
    return [(s["start"], s["value"]) for s in by_metric(samples, metric)]


def expected_activity(details: dict) -> dict[str, list]:
    """What activityDetails samples map to (see GarminSampleSources.swift), per metric."""
    out: dict[str, list] = {m: [] for m in ("heart_rate", "speed", "cadence", "power", "altitude", "latitude",
                                           "longitude", "ambient_temperature", "distance")}
    previous = None
    for s in details["samples"]:
        t = iso(s["startTimeInSeconds"])
        for field, metric in (("heartRate", "heart_rate"), ("speedMetersPerSecond", "speed"),
                              ("stepsPerMinute", "cadence"), ("powerInWatts", "power"),
                              ("elevationInMeters", "altitude"), ("latitudeInDegree", "latitude"),
                              ("longitudeInDegree", "longitude"), ("airTemperatureCelcius", "ambient_temperature")):
            if field in s:
                out[metric].append((t, float(s[field])))
        if "totalDistanceInMeters" in s:
            if previous and s["totalDistanceInMeters"] > previous[1]:
                out["distance"].append((iso(previous[0]), t, s["totalDistanceInMeters"] - previous[1]))
            previous = (s["startTimeInSeconds"], s["totalDistanceInMeters"])
    return out


# --------------------------------------------------------------------------------------------------
# link, push, unlink


def test_garmin_link_push_samples_unlink(garmin):
    env = garmin()
    conn = link(env, "member-garmin")
    requests_made = env.emu.state(brief=True)["requests"]
    assert requests_made.get("GET /wellness-api/rest/user/id") == 1
    assert requests_made.get("GET /wellness-api/rest/user/permissions") == 1
    kept = dict(acc.store_rows(env.daemon, "SELECT key, value FROM vendor_state WHERE vendor = 'garmin'"))
    assert json.loads(kept[f"permissions:{USER}"])["permissions"] == [
        p for p in garmin_emu.PERMISSIONS if p != "HISTORICAL_DATA_EXPORT"], \
        "HISTORICAL_DATA_EXPORT is unticked on Garmin's page unless the user ticks it"

    day = utc_midnight(1)                                           # yesterday, 00:00 UTC
    emu = env.emu
    daily = emu.make_dailies(USER, day, seconds=3600)
    epochs = emu.make_epochs(USER, day + 3600, count=2)
    sleep = emu.make_sleep(USER, day - 4 * 3600, seconds=3 * 3600)
    hrv = emu.make_series("hrv", USER, day - 3 * 3600, count=6, step_s=300)
    pulseox = emu.make_series("pulseox", USER, day - 3 * 3600, count=5, step_s=60)
    breaths = emu.make_series("allDayRespiration", USER, day + 7200, count=5, step_s=60)
    body = emu.make_body_comp(USER, day + 8 * 3600)
    pressure = emu.make_blood_pressure(USER, day + 9 * 3600)
    for summary_type, items in (("dailies", [daily]), ("epochs", epochs), ("sleeps", [sleep]), ("hrv", [hrv]),
                                ("pulseox", [pulseox]), ("allDayRespiration", [breaths]), ("bodyComps", [body]),
                                ("bloodPressures", [pressure])):
        assert_delivered(emu.deliver_summaries(USER, summary_type, items))
    act = emu.create_activity(USER, start=day + 10 * 3600, seconds=300, notify=True)
    assert_delivered(act["webhook"])
    details = act["details"]
    activity_id = str(details["activityId"])

    # Stress has no metric, and a push for a user nobody linked is stored and then ignored.
    assert_delivered(emu.notify(body={"stressDetails": [{"userId": USER, "summaryId": "st-1",
                                                         "timeOffsetStressLevelValues": {"0": 25}}]}))
    stranger = emu.make_dailies("never-linked-user", day, seconds=600)
    assert_delivered(emu.notify(body={"dailies": [{"userId": "never-linked-user", **stranger}]}))

    want_activity = expected_activity(details)

    def complete():
        got = garmin_samples(env)
        return (len(by_metric(got, "heart_rate")) >= len(daily["timeOffsetHeartRateSamples"]) + 1 + 300
                and by_metric(got, "body_weight") and by_metric(got, "blood_pressure_systolic")
                and len(by_metric(got, "distance")) == len(want_activity["distance"]))

    pgtest.wait_until(complete, timeout=30, message=lambda: (
        f"{Counter(s['metric'] for s in garmin_samples(env))}\n{env.daemon.tail(30)}"))
    got = garmin_samples(env)
    assert_common(got, "member-garmin", VENDOR)

    def of(summary_id):
        return [s for s in got if s["source"].get("record_id") == summary_id]

    # Dailies: heart rate at offsets from the day's start (every 15 s), resting heart rate at the start.
    mine = of(daily["summaryId"])
    assert series(mine, "heart_rate") == offsets(daily["timeOffsetHeartRateSamples"], day)
    [resting] = by_metric(mine, "resting_heart_rate")
    assert (resting["start"], resting["value"], resting["quality"]) == (iso(day), 52, ["vendor_computed"])
    assert {s["metric"] for s in mine} == {"heart_rate", "resting_heart_rate"}, "daily totals repeat the epochs"
    # Epochs: steps and active energy over each 15-minute interval.
    for e in epochs:
        mine = of(e["summaryId"])
        [steps] = by_metric(mine, "step_count")
        assert (steps["start"], steps["end"], steps["value"], steps["unit"]) == (
            iso(e["startTimeInSeconds"]), iso(e["startTimeInSeconds"] + 900), e["steps"], "{steps}")
        [kcal] = by_metric(mine, "active_energy")
        assert (kcal["value"], kcal["unit"], kcal["end"]) == (e["activeKilocalories"], "kcal", steps["end"])
    # Sleep stages from sleepLevelsMap (absolute times).
    want_stages = sorted((iso(r["startTimeInSeconds"]), iso(r["endTimeInSeconds"]), stage)
                         for stage, ranges in sleep["sleepLevelsMap"].items() for r in ranges)
    assert [(s["start"], s["end"], s["value"]) for s in by_metric(of(sleep["summaryId"]), "sleep_stage")] == want_stages
    assert series(of(hrv["summaryId"]), "hrv_rmssd") == offsets(hrv["hrvValues"], hrv["startTimeInSeconds"])
    assert series(of(pulseox["summaryId"]), "spo2") == offsets(pulseox["timeOffsetSpo2Values"],
                                                               pulseox["startTimeInSeconds"])
    assert series(of(breaths["summaryId"]), "respiratory_rate") == offsets(breaths["timeOffsetEpochToBreaths"],
                                                                           breaths["startTimeInSeconds"])
    [weight] = by_metric(of(body["summaryId"]), "body_weight")
    assert weight["unit"] == "kg" and math.isclose(weight["value"], body["weightInGrams"] / 1000), "grams → kg"
    assert series(of(body["summaryId"]), "body_fat") == [(iso(body["measurementTimeInSeconds"]), body["bodyFatInPercent"])]
    bp = of(pressure["summaryId"])
    assert series(bp, "blood_pressure_systolic") == [(iso(pressure["measurementTimeInSeconds"]), 121)]
    assert series(bp, "blood_pressure_diastolic") == [(iso(pressure["measurementTimeInSeconds"]), 79)]
    assert series(bp, "heart_rate") == [(iso(pressure["measurementTimeInSeconds"]), 64)]
    # The activity, second by second; Garmin spells it airTemperatureCelcius.
    mine = of(activity_id)
    for metric, want in want_activity.items():
        if metric == "distance":
            got_d = [(s["start"], s["end"], s["value"]) for s in by_metric(mine, metric)]
            assert [(a, b) for a, b, _ in got_d] == [(a, b) for a, b, _ in want]
            assert all(math.isclose(g, w, abs_tol=1e-6) for (_, _, g), (_, _, w) in zip(got_d, want))
        else:
            assert series(mine, metric) == want, metric
    assert all(s["source"].get("device") == {"model": "forerunner965"} for s in mine)
    units = {s["metric"]: s["unit"] for s in mine}
    assert units == {"heart_rate": "/min", "speed": "m/s", "cadence": "/min", "power": "W", "altitude": "m",
                     "latitude": "deg", "longitude": "deg", "ambient_temperature": "Cel", "distance": "m"}
    assert len(mine) == sum(len(w) for w in want_activity.values())

    # The unknown user's push was stored (answered 200) and processed into nothing.
    pgtest.wait_until(lambda: all(done for _, done in env.inbox_rows()), timeout=10)
    assert len(env.inbox_rows()) == 11
    assert not [s for s in got if s["source"].get("record_id") == stranger["summaryId"]]
    assert acc.store_rows(env.daemon, "SELECT id FROM job WHERE vendor = 'garmin' AND kind = 'fetch'") == []
    assert env.emu.state(brief=True)["requests"].get("GET /wellness-api/rest/{path}", 0) == 0, "push needs no pull"

    assert_tokens_sealed(env)
    unlink_and_check(env, conn, "member-garmin", via="deregister")
    assert kept and not acc.store_rows(env.daemon, "SELECT key FROM vendor_state WHERE vendor = 'garmin' AND key = ?",
                                       (f"permissions:{USER}",)), "the kept permissions go with the connection"
    assert_sink_valid(env.daemon)


def test_garmin_webhook_without_our_client_id_is_refused(garmin):
    env = garmin()
    body = garmin_emu.compact({"dailies": [{"userId": USER, **env.emu.make_dailies(USER, utc_midnight(1), 600)}]})
    forged_rejected(env, [
        ("no garmin-client-id", body, {}),
        ("another app's client id", body, {"garmin-client-id": "someone-else"}),
        ("our id, one character short", body, {"garmin-client-id": acc.CLIENT_ID[:-1]}),
        ("our id in another case", body, {"garmin-client-id": acc.CLIENT_ID.upper()}),
    ])
    labels = {l["outcome"] for n, l, v in env.daemon.metrics()
              if n == "pulsegate_webhooks_total" and l.get("vendor") == VENDOR and v > 0}
    assert {"rejected_missing_client_id", "rejected_bad_client_id"} <= labels, labels
    # The control: the same body with our client id → 200, stored once.
    r = env.post_webhook(body, {"garmin-client-id": acc.CLIENT_ID})
    assert r.status_code == 200, r.text
    assert len(env.inbox_rows()) == 1


def test_garmin_url_key_guards_the_endpoint_too(garmin):
    secret = "k3y-0nly-garmin-kn0ws"
    env = garmin(webhook_query=f"?key={secret}", webhook={"url_key": secret})
    body = garmin_emu.compact({"epochs": env.emu.make_epochs(USER, utc_midnight(1), 1)})
    headers = {"garmin-client-id": acc.CLIENT_ID}
    before = acc.webhooks_rejected(env.daemon, VENDOR)
    for url in (env.webhook_url, env.webhook_url + "?key=wrong", env.webhook_url + f"?key={secret}x"):
        r = requests.post(url, data=body, headers={"Content-Type": "application/json", **headers}, timeout=10)
        assert r.status_code == 401, (url, r.status_code)
    assert env.inbox_rows() == [] and acc.webhooks_rejected(env.daemon, VENDOR) == before + 3
    # Garmin calls the URL as configured in its portal, key included: accepted.
    link(env, "member-key")
    assert_delivered(env.emu.deliver_summaries(USER, "epochs", env.emu.make_epochs(USER, utc_midnight(1), 1)))
    pgtest.wait_until(lambda: by_metric(garmin_samples(env), "step_count"), timeout=20,
                      message=lambda: env.daemon.tail(20))


# --------------------------------------------------------------------------------------------------
# ping mode, activity files


def fit_heart_rates(path) -> list[tuple[str, float]]:
    """The fixture's record heart rates, by an independent decoder (fitdecode)."""
    out = []
    with fitdecode.FitReader(str(path)) as reader:
        for frame in reader:
            if isinstance(frame, fitdecode.FitDataMessage) and frame.name == "record":
                values = {f.name: f.value for f in frame.fields}
                if values.get("heart_rate") is not None:
                    ts = values["timestamp"].replace(tzinfo=timezone.utc).timestamp()
                    out.append((iso(ts), float(values["heart_rate"])))
    return out


@pytest.fixture
def other_host():
    r = _Recorder()
    yield r
    r.close()


def test_garmin_ping_callbacks_and_activity_fit_file(garmin, other_host):
    env = garmin(emu_options={"mode": "ping"})
    link(env, "member-ping")
    emu = env.emu
    day = utc_midnight(1)

    # A summary by ping: {"dailies":[{"userId","callbackURL"}]} → the callback, with the user's token.
    daily = emu.make_dailies(USER, day, seconds=900)
    ping = emu.deliver_summaries(USER, "dailies", [daily])
    assert_delivered(ping)
    announced = json.loads(ping["body"])["dailies"][0]
    assert set(announced) == {"userId", "callbackURL"}
    pgtest.wait_until(lambda: len(by_metric(garmin_samples(env, daily["summaryId"]), "heart_rate")) == 60,
                      timeout=20, message=lambda: env.daemon.tail(20))
    assert series(garmin_samples(env, daily["summaryId"]), "heart_rate") == offsets(
        daily["timeOffsetHeartRateSamples"], day)

    # An activity file: FIT bytes from the callback, decoded by PulseGateFIT.
    made = emu.create_activity_file(USER)
    assert_delivered(made["webhook"])
    activity_id = str(made["activityId"])
    want = fit_heart_rates(garmin_emu.DATA_DIR / "garmin-fenix5-run-hrv.fit")
    assert len(want) == 21
    pgtest.wait_until(lambda: len(by_metric(garmin_samples(env, activity_id), "heart_rate")) == len(want),
                      timeout=20, message=lambda: env.daemon.tail(20))
    from_fit = garmin_samples(env, activity_id)
    assert series(from_fit, "heart_rate") == want
    assert_common(from_fit, "member-ping", VENDOR)
    assert len({s["metric"] for s in from_fit}) > 1, Counter(s["metric"] for s in from_fit)

    # TCX is announced too but not decoded: nothing is fetched for it.
    tcx = emu.create_activity_file(USER, file_type="TCX", data=b"<TrainingCenterDatabase/>")
    assert_delivered(tcx["webhook"])
    # A callback on another host (a forged or misconfigured ping) is never fetched.
    emu.configure(notification_url_base=f"http://127.0.0.1:{other_host.port}")
    evil = emu.create_activity_file(USER)
    assert_delivered(evil["webhook"])
    assert json.loads(evil["webhook"]["body"])["activityFiles"][0]["callbackURL"].startswith(
        f"http://127.0.0.1:{other_host.port}/")
    pgtest.wait_until(lambda: acc.metric_value(env.daemon, "pulsegate_vendor_jobs_total", vendor=VENDOR,
                                               outcome="parked") >= 1, timeout=20, message=lambda: env.daemon.tail(20))
    [(error,)] = acc.store_rows(env.daemon, "SELECT last_error FROM job WHERE vendor = 'garmin' AND kind = 'fetch'")
    assert error.startswith("parked") and f"127.0.0.1:{other_host.port}" in error, error
    assert other_host.requests == []
    counts = env.emu.state(brief=True)["requests"]
    assert counts.get("GET /wellness-api/rest/activityFile") == 1, counts
    assert counts.get("GET /wellness-api/rest/{path}") == 1, counts
    assert not garmin_samples(env, str(tcx["activityId"])) and not garmin_samples(env, str(evil["activityId"]))
    assert_sink_valid(env.daemon)


# --------------------------------------------------------------------------------------------------
# deregistration, permissions, backfill, refresh


def test_garmin_deregistration_and_permission_change(garmin):
    env = garmin()
    link(env, "member-dereg")
    permission_reads = env.emu.state(brief=True)["requests"]["GET /wellness-api/rest/user/permissions"]
    # The user stops sharing health data at Garmin: userPermissionsChange → the permissions read again.
    assert_delivered(env.emu.change_permissions(USER, ["ACTIVITY_EXPORT"]))

    def kept():
        rows = acc.store_rows(env.daemon, "SELECT value FROM vendor_state WHERE vendor = 'garmin' AND key = ?",
                              (f"permissions:{USER}",))
        return rows and json.loads(rows[0][0])["permissions"]

    pgtest.wait_until(lambda: kept() == ["ACTIVITY_EXPORT"], timeout=20, message=lambda: env.daemon.tail(20))
    assert env.emu.state(brief=True)["requests"]["GET /wellness-api/rest/user/permissions"] == permission_reads + 1

    # The user disconnects the app in Garmin Connect: a deregistration → revoked, tombstone.
    registrations = env.emu.state(brief=True)["requests"].get("DELETE /wellness-api/rest/user/registration", 0)
    env.emu.revoke_user(USER)
    pgtest.wait_until(lambda: acc.connections(env.daemon, env.key, "member-dereg")[0]["status"] == "revoked",
                      timeout=20, message=lambda: env.daemon.tail(20))
    tomb = [e for e in acc.events(env.daemon, "tombstone") if e["subject"] == "member-dereg"]
    assert tomb and "record_id" not in tomb[0]["source"]
    assert [e for e in acc.events(env.daemon, "connection.revoked") if e["subject"] == "member-dereg"]
    assert env.emu.state(brief=True)["requests"].get("DELETE /wellness-api/rest/user/registration", 0) == registrations
    # Data pushed after the deregistration is not mapped for the revoked connection.
    assert_delivered(env.emu.deliver_summaries(USER, "epochs", env.emu.make_epochs(USER, utc_midnight(1), 1)))
    time.sleep(1)
    assert not garmin_samples(env)
    assert_sink_valid(env.daemon)


def test_garmin_backfill_needs_historical_permission(garmin):
    env = garmin(backfill_days=30)
    emu = env.emu
    # History at Garmin from before the link, never announced.
    old_day = utc_midnight(10)
    emu.create_user("history-user")
    pulseox = emu.make_series("pulseox", "history-user", old_day, count=4, step_s=60)
    emu.deliver_summaries("history-user", "pulseox", [pulseox], notify=False)
    emu.deliver_summaries(USER, "pulseox", [emu.make_series("pulseox", USER, old_day, 4, 60)], notify=False)

    # Linked without HISTORICAL_DATA_EXPORT (unticked by default): the backfill asks Garmin nothing.
    link(env, "member-no-history")
    pgtest.wait_until(lambda: not acc.store_rows(env.daemon, "SELECT id FROM job WHERE vendor = 'garmin'"),
                      timeout=20, message=lambda: env.daemon.tail(20))
    assert emu.state(brief=True)["backfills"] == []

    # With the permission ticked: one request per mapped type, each at most 30 days; Garmin answers 202
    # and pushes the window's summaries afterwards.
    link(env, "member-history", user="history-user", granted=list(garmin_emu.PERMISSIONS))
    backfills = pgtest.wait_until(lambda: (b := emu.state(brief=True)["backfills"]) and len(b) >= 9 and b,
                                  timeout=20, message=lambda: env.daemon.tail(20))
    assert sorted(b["type"] for b in backfills) == sorted(
        ["activityDetails", "bloodPressures", "bodyComps", "dailies", "epochs", "hrv", "pulseOx", "respiration",
         "sleeps"])
    assert all(b["status"] == 202 and 0 < b["end"] - b["start"] <= 30 * 86400 for b in backfills), backfills
    assert all(b["user"] == "history-user" for b in backfills)
    pgtest.wait_until(lambda: by_metric(garmin_samples(env, pulseox["summaryId"]), "spo2"), timeout=20,
                      message=lambda: env.daemon.tail(20))
    got = garmin_samples(env, pulseox["summaryId"])
    assert series(got, "spo2") == offsets(pulseox["timeOffsetSpo2Values"], old_day)
    assert {s["subject"] for s in got} == {"member-history"}
    assert_sink_valid(env.daemon)


def test_garmin_refresh_rotates_and_the_newest_token_is_used(garmin):
    # An access token of 70 s is refreshed within seconds (refresh ahead ≥ 60 s); Garmin rotates the
    # refresh token on every refresh and the previous one dies once the new one is used.
    env = garmin(emu_options={"access_ttl_s": 70, "previous_refresh_valid_until_used": False,
                              "modes": {"dailies": "ping"}})
    conn = link(env, "member-refresh")
    pgtest.wait_until(lambda: env.emu.state(brief=True)["refreshes_served"] >= 2, timeout=60,
                      message=lambda: env.daemon.tail(20))
    state = env.emu.state(user=USER)
    assert state["refresh_reuse"] == {} and state["locked_out"] == [], state
    # A ping fetched now uses the newest access token (an older one would be refused).
    daily = env.emu.make_dailies(USER, utc_midnight(1), seconds=300)
    assert_delivered(env.emu.deliver_summaries(USER, "dailies", [daily]))
    pgtest.wait_until(lambda: len(by_metric(garmin_samples(env, daily["summaryId"]), "heart_rate")) == 20,
                      timeout=20, message=lambda: env.daemon.tail(20))
    assert acc.connections(env.daemon, env.key, "member-refresh")[0]["status"] == "active"
    assert_tokens_sealed(env)
    unlink_and_check(env, conn, "member-refresh", via="deregister")


# --------------------------------------------------------------------------------------------------
# the must-show: a 10-hour activity pushed with 1-second samples


def proc_status_kib(pid: int) -> dict[str, int]:
    """VmHWM (peak resident set so far), VmRSS and RssAnon of a process, in KiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name = line.split(":", 1)[0]
            if name in ("VmHWM", "VmRSS", "RssAnon"):
                out[name] = int(line.split()[1])
    return out


@dataclasses.dataclass
class PushRun:
    hours: int
    body_bytes: int
    samples: int
    idle_hwm_kib: int
    peak_hwm_kib: int
    latency_ms: float
    seconds: float
    anon_before_mapping_kib: int = 0    # RssAnon peak from the push until the first sample reached the sink
    anon_mapping_start_kib: int = 0     # RssAnon when the first sample reached the sink
    anon_mapping_peak_kib: int = 0      # RssAnon peak while the samples streamed into the sink

    @property
    def growth_kib(self) -> int:
        return self.peak_hwm_kib - self.idle_hwm_kib

    @property
    def mapping_growth_kib(self) -> int:
        return self.anon_mapping_peak_kib - self.anon_mapping_start_kib


class MemorySampler:
    """Samples the daemon's /proc status every 20 ms and notes when its first sample line reached the
    file sink (the mapping phase starts): before it the body passes through intake and the store, after
    it only the streamed samples are added."""

    def __init__(self, daemon: pgtest.Daemon):
        self.daemon = daemon
        self.sink = daemon.state_dir / "samples.ndjson"
        self.sink_size = self.sink.stat().st_size if self.sink.exists() else 0
        self.points: list[tuple[bool, dict]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        mapping = False
        while not self.stop.is_set():
            mapping = mapping or (self.sink.exists() and self.sink.stat().st_size > self.sink_size)
            self.points.append((mapping, proc_status_kib(self.daemon.pid)))
            time.sleep(0.02)

    def finish(self, run: PushRun) -> None:
        self.stop.set()
        self.thread.join()
        before = [p["RssAnon"] for mapping, p in self.points if not mapping]
        during = [p["RssAnon"] for mapping, p in self.points if mapping]
        assert during, "the sampler never saw the mapping phase"
        run.anon_before_mapping_kib = max(before or [0])
        run.anon_mapping_start_kib = during[0]
        run.anon_mapping_peak_kib = max(during)


def push_activity(garmin, hours: int) -> tuple[PushRun, Env, dict]:
    """A fresh daemon, one linked user, one pushed activity of `hours` with 1-second samples; waits until
    every sample is in the file sink and returns the figures."""
    env = garmin(name=f"pulsegate-{hours}h")
    link(env, f"member-{hours}h")
    idle = proc_status_kib(env.daemon.pid)["VmHWM"]
    seconds = hours * 3600
    start = int(time.time()) - seconds - 600
    details = env.emu.create_activity(USER, start=start, seconds=seconds, notify=False)["details"]
    per_sample = sum(1 for k in ("heartRate", "speedMetersPerSecond", "stepsPerMinute", "powerInWatts",
                                 "elevationInMeters", "latitudeInDegree", "longitudeInDegree", "airTemperatureCelcius")
                     if k in details["samples"][0])
    expected = seconds * (per_sample + 1) - 1          # + a distance interval between consecutive seconds
    reader = pgtest.FileSinkReader(env.daemon.state_dir)
    sampler = MemorySampler(env.daemon)
    t0 = time.monotonic()
    webhook = env.emu.notify(body=env.emu.notification_body(USER, "activityDetails", [details], int(time.time())))
    assert_delivered(webhook)

    def arrived():
        assert env.daemon.alive(), env.daemon.tail(40)
        return len(reader.poll()) >= expected + 1        # + the connection.linked event
    pgtest.wait_until(arrived, timeout=900, interval=1, message=lambda: (
        f"{len(reader.ids)} of {expected} samples in the sink\n{env.daemon.tail(20)}"))
    run = PushRun(hours, len(webhook["body"].encode()), expected, idle, proc_status_kib(env.daemon.pid)["VmHWM"],
                  webhook["latency_ms"], round(time.monotonic() - t0, 1))
    sampler.finish(run)
    return run, env, {"details": details}


def check_every_sample(env: Env, made: dict) -> int:
    """Every sample of the activity is in the sink exactly once with the value Garmin sent (streamed
    line by line: the sink holds ~324,000 lines for 10 hours)."""
    details = made["details"]
    samples = details["samples"]
    t0 = samples[0]["startTimeInSeconds"]
    fields = {"heart_rate": "heartRate", "speed": "speedMetersPerSecond", "cadence": "stepsPerMinute",
              "power": "powerInWatts", "altitude": "elevationInMeters", "latitude": "latitudeInDegree",
              "longitude": "longitudeInDegree", "ambient_temperature": "airTemperatureCelcius"}
    seen = {m: bytearray(len(samples)) for m in [*fields, "distance"]}
    record = str(details["activityId"])
    count = 0
    for path in sorted(env.daemon.state_dir.glob("samples*.ndjson")):
        with open(path, "rb") as f:
            for line in f:
                s = json.loads(line)
                if "event" in s:
                    continue
                assert s["source"] == {"kind": "cloud", "vendor": VENDOR, "record_id": record,
                                       "device": {"model": "forerunner965"}}, s
                i = int(datetime.fromisoformat(s["start"].replace("Z", "+00:00")).timestamp()) - t0
                metric = s["metric"]
                if metric == "distance":
                    end = int(datetime.fromisoformat(s["end"].replace("Z", "+00:00")).timestamp()) - t0
                    assert end == i + 1, s
                    want = samples[end]["totalDistanceInMeters"] - samples[i]["totalDistanceInMeters"]
                    assert math.isclose(s["value"], want, abs_tol=1e-6), (s, want)
                else:
                    assert s["value"] == float(samples[i][fields[metric]]), (s, samples[i])
                assert not seen[metric][i], f"{metric} at second {i} twice"
                seen[metric][i] = 1
                count += 1
    for metric, marks in seen.items():
        missing = marks.count(0) - (1 if metric == "distance" else 0)   # no interval ends at second 0
        assert missing == 0, f"{metric}: {missing} seconds missing"
    return count


def test_garmin_10_hour_push_flows_with_memory_bounded_by_the_body(garmin):
    one, _, _ = push_activity(garmin, 1)
    ten, env, made = push_activity(garmin, 10)
    assert check_every_sample(env, made) == ten.samples == 36_000 * 9 - 1

    def mib(kib: float) -> float:
        return kib / 1024

    body_delta = (ten.body_bytes - one.body_bytes) / 2**20
    growth_delta = mib(ten.growth_kib - one.growth_kib)
    print("\nGarmin push of one activityDetails with 1-second samples, a fresh daemon per run "
          "(VmHWM and RssAnon from /proc/<pid>/status):")
    for r in (one, ten):
        print(f"  {r.hours:2d} h: body {r.body_bytes / 2**20:5.1f} MiB, {r.samples:6d} samples; answered in "
              f"{r.latency_ms:4.0f} ms, all in the sink after {r.seconds:4.1f} s; VmHWM {mib(r.idle_hwm_kib):5.1f} "
              f"→ {mib(r.peak_hwm_kib):5.1f} MiB (+{mib(r.growth_kib):5.1f}); RssAnon peak before mapping "
              f"{mib(r.anon_before_mapping_kib):5.1f} MiB, while mapping {mib(r.anon_mapping_start_kib):5.1f} → "
              f"{mib(r.anon_mapping_peak_kib):5.1f} MiB (+{mib(r.mapping_growth_kib):4.1f})")
    print(f"  10 h vs 1 h: body +{body_delta:.1f} MiB, samples ×{ten.samples / one.samples:.0f}; peak growth "
          f"+{growth_delta:.1f} MiB = {growth_delta / body_delta:.1f} × the extra body bytes, reached before "
          f"the first sample was in the sink; streaming the samples added {mib(one.mapping_growth_kib):.1f} "
          f"and {mib(ten.mapping_growth_kib):.1f} MiB")
    # While 36,000 elements become 324,000 samples, memory stays flat: the samples stream a batch at a
    # time. All 324,000 samples held at once would be over 60 MiB (a Sample is more than 200 bytes), a
    # tree of the samples list ~25 MiB.
    assert mib(ten.mapping_growth_kib) <= 16, ten
    assert ten.anon_mapping_peak_kib <= ten.anon_before_mapping_kib, ten
    assert mib(ten.mapping_growth_kib) <= mib(one.mapping_growth_kib) + 8, (one, ten)
    # The peak comes while the body itself passes through intake and the store: the HTTP buffer and
    # its array, SQLite's in-memory record and GRDB's Data/array copies when the inbox row is written
    # and read back, the per-summary record split off it and written as a raw payload, that payload
    # read back by the map job — several whole copies of the body alive at once, plus what the
    # allocator keeps of freed ones. So the growth is a fixed multiple of the extra body bytes.
    assert growth_delta <= 16 * body_delta, (one, ten)
    assert ten.latency_ms < 30_000
    assert_sink_valid_sampled(env)


def assert_sink_valid_sampled(env: Env) -> None:
    """Schema check of the events and of a spread of the activity's samples (all 324,000 would take
    minutes in jsonschema; check_every_sample already checked every value and source)."""
    from test_accounts_vendors import EVENT_SCHEMA, SAMPLE_SCHEMA
    problems = []
    for path in sorted(env.daemon.state_dir.glob("samples*.ndjson")):
        with open(path, "rb") as f:
            for n, line in enumerate(f):
                obj = json.loads(line)
                if "event" in obj:
                    problems += [e.message for e in EVENT_SCHEMA.iter_errors(obj)]
                elif n % 97 == 0:
                    problems += [e.message for e in SAMPLE_SCHEMA.iter_errors(obj)]
    assert not problems, problems[:10]
