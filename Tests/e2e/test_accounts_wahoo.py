"""Wahoo end to end, through the real daemon and the Wahoo emulator.

Link through the consent page (PKCE, the user id from GET /v1/user); a workout_summary webhook → the
workout's real FIT file downloaded from the CDN (without the user's token) → samples decoded from it;
a workout entered by hand (summary, no file) → its totals only; forged webhooks (wrong or missing
webhook_token) refused without a trace; Wahoo's duplicate deliveries absorbed, an edited workout
fetched again; a file URL on another host never fetched; rotating refresh tokens; the backfill's
listing with and without the summaries embedded; unlink (DELETE /v1/permissions, tombstone). Every
sink line is validated against its JSON Schema.

The helpers come from test_accounts_vendors.py and accounts.py; only the daemon config for Wahoo is
built here (accounts.py knows the four vendors it was written for).
"""

from __future__ import annotations

import json
import time

import pytest

import accounts as acc
import pgtest
from emulators import start_emulator
from emulators import wahoo as wahoo_emu
from test_accounts_vendors import (Env, assert_common, assert_sink_valid, assert_tokens_sealed, by_metric,
                                   forged_rejected, iso, other_host, parse_iso, unique, unlink_and_check)

VENDOR = "wahoo"
USER = wahoo_emu.WahooEmulator.default_user_id
TOKEN = "e2e-wahoo-webhook-token-5f1c9a"
FIT = "wahoo-elemnt-bolt-no-app-id.fit"
# What two independent decoders read from the fixture (the FIT corpus's reference output).
FIRST = ("2017-08-21T08:18:00.000Z", 160, 48)       # time, power W, cadence rpm
LAST = ("2017-08-21T08:20:11.000Z", 90, 57, 4.88)   # time, power, cadence, speed m/s
FILE_ROUTE = f"GET {wahoo_emu.FILE_PATH}/{{token}}/{{name}}"
SUMMARY_ROUTE = "GET /v1/workouts/{workout_id}/workout_summary"

__all__ = ["other_host"]   # the fixture, re-exported so pytest finds it here


def wahoo_config(emu, **extra) -> dict:
    """`vendors.wahoo` for the daemon: the emulator's endpoints, our client, the portal's webhook token."""
    cfg = {"client_id": acc.CLIENT_ID, "client_secret": acc.CLIENT_SECRET, "urls": emu.urls(),
           "webhook": {"webhook_token": TOKEN}}
    return pgtest._merge(cfg, extra)


class WahooEnv(Env):
    def link(self, subject: str, user=None) -> dict:
        r = acc.link(self.daemon, self.key, VENDOR, subject, self.emu, user=user)
        assert r.status_code == 200, r.text[:500]
        assert "Wahoo connected" in r.text, r.text[:500]
        [conn] = acc.connections(self.daemon, self.key, subject)
        assert conn["status"] == "active" and conn["vendor"] == VENDOR, conn
        return conn

    def jobs_done(self) -> bool:
        return not acc.store_rows(self.daemon, "SELECT id FROM job") and all(done for _, done in self.inbox_rows())

    def downloads(self) -> list[dict]:
        return self.emu.state(brief=True)["file_downloads"]


@pytest.fixture
def wahoo(daemon_factory, tmp_path):
    """make(emu_options=None, prepare=None, **vendor_config) -> WahooEnv: the Wahoo emulator, whose
    portal webhook URL is the daemon's, and a daemon with a file sink linked to it (no backfill unless
    asked for)."""
    emus = []

    def make(emu_options: dict | None = None, prepare=None, **vendor_cfg) -> WahooEnv:
        port = pgtest.free_port()
        emu = start_emulator(VENDOR, client_id=acc.CLIENT_ID, client_secret=acc.CLIENT_SECRET,
                             webhook_url=f"http://127.0.0.1:{port}/v1/webhooks/{VENDOR}",
                             webhook_token=TOKEN, **(emu_options or {}))
        emus.append(emu)
        if prepare is not None:
            prepare(emu)
        key = acc.links_key()
        cfg = wahoo_config(emu, **{"backfill_days": 0, **vendor_cfg})
        daemon = daemon_factory(acc.accounts_config(tmp_path, port, key, {VENDOR: cfg}))
        daemon.start()
        return WahooEnv(VENDOR, daemon, emu, key)

    yield make
    for emu in emus:
        emu.stop()


def delivered(result: dict | None) -> None:
    """Wahoo counts exactly 200 as delivered (anything else is retried 30 min later)."""
    assert result is not None, "the portal's webhook URL received nothing"
    assert result["status"] == 200 and result["attempts"] == 1, result
    assert result["latency_ms"] < 10_000, result


def record_samples(env: Env, record_id) -> list[dict]:
    return unique([s for s in acc.samples(env.daemon, VENDOR) if s["source"].get("record_id") == str(record_id)])


def assert_fit_samples(got: list[dict], subject: str) -> None:
    """The fixture's samples: the decoders' first and last record, no heart rate (the ride had no strap)."""
    assert_common(got, subject, VENDOR)
    power, cadence, speed = by_metric(got, "power"), by_metric(got, "cadence"), by_metric(got, "speed")
    assert (power[0]["start"], power[0]["value"]) == (FIRST[0], FIRST[1]), power[:2]
    assert (cadence[0]["start"], cadence[0]["value"]) == (FIRST[0], FIRST[2]), cadence[:2]
    assert (power[-1]["start"], power[-1]["value"]) == (LAST[0], LAST[1]), power[-2:]
    assert (cadence[-1]["start"], cadence[-1]["value"]) == (LAST[0], LAST[2]), cadence[-2:]
    assert speed[-1]["start"] == LAST[0] and abs(speed[-1]["value"] - LAST[3]) < 0.01, speed[-2:]
    assert all(s["unit"] == "W" for s in power) and all(s["unit"] == "/min" for s in cadence)
    assert all(s["unit"] == "m/s" for s in speed)
    assert not by_metric(got, "heart_rate")
    assert all(FIRST[0] <= s["start"] <= LAST[0] for s in got), "a sample outside the ride"


# --------------------------------------------------------------------------------------------------


def test_wahoo_link_webhook_fit_samples_unlink(wahoo):
    env = wahoo()
    conn = env.link("member-wahoo")
    [(vendor_user,)] = acc.store_rows(env.daemon, "SELECT vendor_user_id FROM connection WHERE id = ?", (conn["id"],))
    assert vendor_user == str(USER), "the user id of Wahoo's webhooks, from GET /v1/user"
    assert env.requests_to("GET /v1/user") == 1

    since = time.time() - 5
    made = env.emu.create_workout(USER, notify=True)
    delivered(made["webhook"])
    message = json.loads(made["webhook"]["body"])
    assert message["event_type"] == "workout_summary" and message["webhook_token"] == TOKEN
    assert message["workout_summary"]["power_avg"] == "128.0", "numbers as strings, as Wahoo delivers them"
    workout_id = made["workout"]["id"]

    pgtest.wait_until(lambda: record_samples(env, workout_id) and env.jobs_done(), timeout=30,
                      message=lambda: f"{len(record_samples(env, workout_id))} samples\n{env.daemon.tail(20)}")
    got = record_samples(env, workout_id)
    assert_fit_samples(got, "member-wahoo")
    # The FIT file came from the CDN once, without the user's bearer token; the API was not asked again.
    downloads = env.downloads()
    assert len(downloads) == 1 and downloads[0]["found"], downloads
    assert not downloads[0]["authorization"], "the user's token was sent to the CDN"
    assert env.requests_to(SUMMARY_ROUTE) == 0 and env.requests_to("GET /v1/workouts") == 0
    # The raw FIT file is kept for replay, byte for byte.
    [(body,)] = acc.store_rows(env.daemon, "SELECT body FROM raw_payload WHERE vendor = 'wahoo' AND record_key = ?",
                               (f"workout:{workout_id}",))
    assert bytes(body) == (wahoo_emu.DATA_DIR / FIT).read_bytes()
    # ... and `pulsegate replay` maps it again into the very same samples (same ids, same values).
    lines = [s for s in acc.samples(env.daemon, VENDOR) if s["source"].get("record_id") == str(workout_id)]
    p = env.daemon.cli("replay", "--vendor", VENDOR, "--since", iso(since))
    assert p.returncode == 0, pgtest.cli_result(p)
    assert f"into {len(lines)} samples" in p.stdout, pgtest.cli_result(p)
    pgtest.wait_until(lambda: len([s for s in acc.samples(env.daemon, VENDOR)
                                   if s["source"].get("record_id") == str(workout_id)]) == 2 * len(lines),
                      timeout=20, message=lambda: env.daemon.tail(20))
    assert unique(acc.samples(env.daemon, VENDOR)) == got

    assert_tokens_sealed(env)
    unlink_and_check(env, conn, "member-wahoo", via="deauthorize")
    assert env.requests_to("DELETE /v1/permissions") == 1
    assert_sink_valid(env.daemon)


def test_wahoo_workout_without_a_file_maps_its_totals_only(wahoo):
    env = wahoo()
    env.link("member-wahoo-manual")
    start = int(time.time()) - 6 * 3600
    made = env.emu.create_workout(USER, fixture=None, manual=True, start=start, seconds=1800, distance=10000,
                                  calories=350, name="Trainer", notify=True)
    delivered(made["webhook"])
    assert made["file"] is None
    workout_id = made["workout"]["id"]
    pgtest.wait_until(lambda: len(record_samples(env, workout_id)) == 2 and env.jobs_done(), timeout=20,
                      message=lambda: env.daemon.tail(20))
    got = record_samples(env, workout_id)
    assert_common(got, "member-wahoo-manual", VENDOR)
    by = {s["metric"]: s for s in got}
    assert set(by) == {"distance", "active_energy"}, "averages are not measurements: only the totals map"
    assert (by["distance"]["value"], by["distance"]["unit"]) == (10000, "m")
    assert (by["active_energy"]["value"], by["active_energy"]["unit"]) == (350, "kcal")
    for s in got:
        assert (s["start"], s["end"]) == (iso(start), iso(start + 1800)), s
        assert s.get("quality") == ["vendor_computed"], s
    # Everything came in the message: nothing was fetched.
    assert env.downloads() == [] and env.requests_to(SUMMARY_ROUTE) == 0
    assert_sink_valid(env.daemon)


def test_wahoo_forged_webhooks_are_refused(wahoo):
    env = wahoo()
    env.link("member-wahoo-forged")
    made = env.emu.create_workout(USER)           # not announced
    # The message Wahoo would send for it, as the emulator builds it.
    genuine = {"event_type": "workout_summary", "webhook_token": TOKEN, "user": {"id": USER},
               "workout_summary": made}
    assert genuine["webhook_token"] == TOKEN

    def body(**changes) -> bytes:
        message = {**genuine, **changes}
        return wahoo_emu.compact({k: v for k, v in message.items() if v is not None})

    forged_rejected(env, [
        ("wrong token", body(webhook_token="guessed-token"), {}),
        ("token with a suffix", body(webhook_token=TOKEN + "0"), {}),
        ("no token", body(webhook_token=None), {}),
        ("token in a header instead", body(webhook_token=None), {"X-Webhook-Token": TOKEN}),
        ("not JSON", f"webhook_token={TOKEN}".encode(), {"Content-Type": "application/x-www-form-urlencoded"}),
    ])
    labels = {l["outcome"] for n, l, v in env.daemon.metrics()
              if n == "pulsegate_webhooks_total" and l.get("vendor") == VENDOR and v > 0}
    assert {"rejected_bad_signature", "rejected_missing_signature"} <= labels, labels
    # Wahoo itself with a wrong portal token: refused at every attempt, nothing fetched.
    result = env.emu.send_webhook(workout_id=made["workout"]["id"], webhook_token="stale-portal-token")
    assert result["status"] == 401 and not result["delivered"], result
    assert env.downloads() == []
    # The control: the genuine message is accepted (200, as Wahoo requires) and stored once.
    r = env.post_webhook(body(), {})
    assert r.status_code == 200, r.text
    assert len(env.inbox_rows()) == 1
    pgtest.wait_until(lambda: record_samples(env, made["workout"]["id"]), timeout=30,
                      message=lambda: env.daemon.tail(20))


def test_wahoo_duplicates_are_absorbed_and_an_edited_workout_is_fetched_again(wahoo):
    env = wahoo()
    env.link("member-wahoo-dup")
    made = env.emu.create_workout(USER)
    workout_id = made["workout"]["id"]
    first = env.emu.send_webhook(user=USER, workout_id=workout_id, duplicate=True)
    for d in first["deliveries"]:
        delivered(d)
    assert first["deliveries"][0]["body"] == first["deliveries"][1]["body"]
    pgtest.wait_until(lambda: record_samples(env, workout_id) and env.jobs_done(), timeout=30,
                      message=lambda: env.daemon.tail(20))
    count = len(record_samples(env, workout_id))
    assert len(env.downloads()) == 1, "the duplicate was fetched again"
    assert acc.metric_value(env.daemon, "pulsegate_webhooks_total", vendor=VENDOR, outcome="duplicate") == 1

    # The same summary revision re-sent later (Wahoo's retry after 30 minutes) is absorbed too.
    again = env.emu.send_webhook(user=USER, workout_id=workout_id)
    delivered(again)
    assert acc.metric_value(env.daemon, "pulsegate_webhooks_total", vendor=VENDOR, outcome="duplicate") == 2

    # Edited at Wahoo: a new revision (updated_at) with a new file URL is fetched again; the samples
    # are the same measurements, so they keep their ids.
    edited = env.emu.update_workout(workout_id, name="Morning ride", fixture=FIT, notify=True)
    delivered(edited["webhook"])
    assert edited["updated_at"] > made["updated_at"]
    pgtest.wait_until(lambda: len(env.downloads()) == 2 and env.jobs_done(), timeout=30,
                      message=lambda: env.daemon.tail(20))
    assert len(record_samples(env, workout_id)) == count
    assert acc.metric_value(env.daemon, "pulsegate_webhooks_total", vendor=VENDOR, outcome="accepted") == 2
    assert_sink_valid(env.daemon)


def test_wahoo_file_url_on_another_host_is_not_fetched(wahoo, other_host):
    env = wahoo(emu_options={"file_url_base": f"http://127.0.0.1:{other_host.port}"})
    env.link("member-wahoo-ssrf")
    made = env.emu.create_workout(USER, notify=True)
    delivered(made["webhook"])
    assert made["file"]["url"].startswith(f"http://127.0.0.1:{other_host.port}/")

    def parked():
        return acc.metric_value(env.daemon, "pulsegate_vendor_jobs_total", vendor=VENDOR, outcome="parked") >= 1

    pgtest.wait_until(parked, timeout=20, message=lambda: env.daemon.tail(20))
    [(error,)] = acc.store_rows(env.daemon, "SELECT last_error FROM job WHERE vendor = 'wahoo' AND kind = 'fetch'")
    assert error.startswith("parked") and f"127.0.0.1:{other_host.port}" in error, error
    assert other_host.requests == [], f"the daemon fetched from the other host: {other_host.requests}"
    assert env.downloads() == [] and acc.samples(env.daemon, VENDOR) == []


def test_wahoo_rotating_refresh_tokens(wahoo):
    # 61-second access tokens: every refresh is due at once. Each answer carries a new refresh token;
    # the replaced one dies when the new pair is first used (Wahoo's rule).
    env = wahoo(emu_options={"access_ttl_s": 61})
    env.link("member-wahoo-refresh")
    pgtest.wait_until(lambda: env.emu.state(user=USER)["user"]["refreshes"] >= 2, timeout=60,
                      message=lambda: f"{env.emu.state(user=USER)['user']}\n{env.daemon.tail(20)}")
    st = env.emu.state(user=USER)
    assert st["user"]["refresh_reuse"] == 0 and st["user"]["refresh_retries"] == 0, st["user"]
    with env.emu.lock:
        live = [t for t, rt in env.emu.refresh_tokens.items() if rt.state == "active" and not rt.grant.revoked]
        issued = len(env.emu.refresh_tokens)
    assert len(live) == 1 and issued >= 3, (live, issued)
    conn = acc.connections(env.daemon, env.key, "member-wahoo-refresh")[0]
    assert conn["status"] == "active", conn
    assert_tokens_sealed(env)
    # The newest access token works: Wahoo records the unlink's DELETE /v1/permissions only for a
    # valid token.
    unlink_and_check(env, conn, "member-wahoo-refresh", via="deauthorize")


@pytest.mark.parametrize("embedded", [True, False], ids=["summaries-in-listing", "summary-per-workout"])
def test_wahoo_backfill_lists_workouts_in_the_window(wahoo, embedded):
    made: dict[str, dict] = {}
    now = int(time.time())

    def prepare(emu):
        # Before the member links (nothing announced): the 2017 ride with its file, a recent workout
        # entered by hand, one still without a summary, and one older than the backfill window.
        made["ride"] = emu.create_workout(USER)
        made["manual"] = emu.create_workout(USER, fixture=None, manual=True, start=now - 2 * 86400, seconds=3600,
                                            distance=25000, calories=600)
        made["pending"] = emu.create_workout(USER, fixture=None, summary=False, start=now - 86400)
        made["old"] = emu.create_workout(USER, start=parse_iso("2016-01-05T10:00:00Z"))

    env = wahoo(emu_options={"list_embeds_summary": embedded}, prepare=prepare, backfill_days=3650)
    env.link("member-wahoo-backfill")
    ride = made["ride"]["workout"]["id"]
    manual = made["manual"]["workout"]["id"]
    pgtest.wait_until(lambda: record_samples(env, ride) and len(record_samples(env, manual)) == 2
                      and env.jobs_done(), timeout=60, message=lambda: env.daemon.tail(30))
    assert_fit_samples(record_samples(env, ride), "member-wahoo-backfill")
    assert {s["metric"] for s in record_samples(env, manual)} == {"distance", "active_energy"}
    assert record_samples(env, made["old"]["workout"]["id"]) == [], "a workout before the window was mapped"
    assert len(env.downloads()) == 1, "only the ride in the window has a file to fetch"
    assert env.requests_to("GET /v1/workouts") == 1
    # With the summaries in the listing only the workout listed without one is asked for it (404: none
    # yet); without them, every workout in the window is.
    assert env.requests_to(SUMMARY_ROUTE) == (1 if embedded else 3)
    assert_sink_valid(env.daemon)
