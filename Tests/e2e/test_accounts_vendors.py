"""Polar, Oura and Fitbit (Google Health API) end to end, through the real daemon and the vendor emulators.

For each vendor: link through the consent page, webhook → fetch → samples with the vendor's values in
canonical units and UTC, tokens sealed at rest, unlink (revoked at the vendor, unlinked + tombstone
events); forged webhooks refused without a trace in the inbox; the vendor's handshake; the
subscriptions the daemon manages itself (Polar's webhook and its one-time key, Oura's subscriptions);
a replayed notification fetched once; and Polar's guard against payload URLs on other hosts.

Every line the file sink holds is validated against the sample or the event JSON Schema.
"""

from __future__ import annotations

import dataclasses
import json
import math
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from jsonschema import Draft202012Validator

import accounts as acc
import pgtest
from emulators import googlehealth as google_emu
from emulators import oura as oura_emu
from emulators import polar as polar_emu

RESOURCES = pgtest.REPO_ROOT / "Sources" / "PulseGateCore" / "Resources"

# Emulator routes that serve the vendor's data (what a fetch costs).
DATA_ROUTES = {
    "polar": "GET /v3/exercises/{exercise_id}",
    "oura": "GET /v2/usercollection/{collection}/{document_id}",
    "fitbit": "GET /v4/users/{user}/dataTypes/{data_type}/dataPoints",
}
# The answer each vendor counts as delivered, and the time it waits for it (vendor.yaml).
SUCCESS = {"polar": (200,), "oura": (200, 201, 202, 204), "fitbit": (204,)}
DEADLINE_MS = {"polar": 5000, "oura": 10000, "fitbit": 10000}
DISPLAY = {"polar": "Polar", "oura": "Oura", "fitbit": "Fitbit (Google Health API)"}


# --------------------------------------------------------------------------------------------------
# schema


def _validator(name: str) -> Draft202012Validator:
    schema = json.loads((RESOURCES / name).read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


SAMPLE_SCHEMA = _validator("sample-v1.schema.json")
EVENT_SCHEMA = _validator("event-v1.schema.json")


def assert_sink_valid(daemon: pgtest.Daemon) -> list[dict]:
    """Every line of the file sink validates against its schema; ids are unique per line kind."""
    lines = acc.sink_lines(daemon)
    problems = []
    for line in lines:
        validator = EVENT_SCHEMA if "event" in line else SAMPLE_SCHEMA
        for err in validator.iter_errors(line):
            problems.append(f"{err.message} at {list(err.absolute_path)} in {json.dumps(line)[:300]}")
    assert not problems, "sink lines violate the schema:\n" + "\n".join(problems[:20])
    return lines


# --------------------------------------------------------------------------------------------------
# helpers


def iso(seconds: float) -> str:
    """A UTC instant as the sink writes it: RFC 3339 with milliseconds and Z."""
    return pgtest.iso(int(round(seconds * 1000)))


def parse_iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def utc_midnight(days_ago: int = 0) -> int:
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return int((today - timedelta(days=days_ago)).timestamp())


@dataclasses.dataclass
class Env:
    vendor: str
    daemon: pgtest.Daemon
    emu: object
    key: pgtest.ApiKey

    @property
    def webhook_url(self) -> str:
        return self.daemon.url(f"/v1/webhooks/{self.vendor}")

    def link(self, subject: str, user=None) -> dict:
        """Links `subject` through the consent page and returns its (active) connection."""
        r = acc.link(self.daemon, self.key, self.vendor, subject, self.emu, user=user)
        assert r.status_code == 200, r.text[:500]
        assert f"{DISPLAY[self.vendor]} connected" in r.text, r.text[:500]
        [conn] = acc.connections(self.daemon, self.key, subject)
        assert conn["status"] == "active" and conn["vendor"] == self.vendor, conn
        return conn

    def requests_to(self, route: str) -> int:
        return self.emu.state(brief=True)["requests"].get(route, 0)

    def inbox_rows(self) -> list[tuple]:
        return acc.store_rows(self.daemon, "SELECT id, done FROM webhook_inbox WHERE vendor = ?", (self.vendor,))

    def post_webhook(self, body: bytes, headers: dict) -> requests.Response:
        return requests.post(self.webhook_url, data=body, headers={"Content-Type": "application/json", **headers},
                             timeout=10)


@pytest.fixture
def start(daemon_factory, tmp_path):
    """start(vendor, subscribed=True, emu_options=None, drop_webhook=(), prepare=None, **vendor_config) -> Env.

    The emulator of `vendor` and a daemon with a file sink linked to it (no backfill, so every
    fetch the tests count comes from a webhook). With `subscribed`, the vendor already delivers to the
    daemon's webhook URL; otherwise the daemon has to subscribe itself."""
    emus = []

    def make(vendor: str, subscribed: bool = True, emu_options: dict | None = None, drop_webhook=(),
             prepare=None, **vendor_cfg) -> Env:
        port = pgtest.free_port()
        emu = acc.start_vendor(vendor, port, subscribed=subscribed, **(emu_options or {}))
        emus.append(emu)
        if prepare is not None:
            prepare(emu)          # the vendor's state before the daemon first looks at it
        cfg = acc.vendor_config(vendor, emu, **{"backfill_days": 0, **vendor_cfg})
        for name in drop_webhook:
            cfg.get("webhook", {}).pop(name, None)
        if cfg.get("webhook") == {}:
            del cfg["webhook"]
        key = acc.links_key()
        daemon = daemon_factory(acc.accounts_config(tmp_path, port, key, {vendor: cfg}))
        daemon.start()
        return Env(vendor, daemon, emu, key)

    yield make
    for emu in emus:
        emu.stop()


def assert_delivered(result: dict, vendor: str) -> None:
    """The emulator's delivery: answered with the vendor's success status, at the first attempt, in time."""
    assert result is not None, "no subscription received the event"
    assert result["status"] in SUCCESS[vendor], result
    assert result["attempts"] == 1, result
    assert result["latency_ms"] < DEADLINE_MS[vendor], result


def unique(samples: list[dict]) -> list[dict]:
    """The samples deduplicated on id, as a consumer does (delivery is at least once, and overlapping
    fetches give the same ids); a repeated id must carry the very same sample."""
    seen: dict[str, dict] = {}
    for s in samples:
        if s["id"] in seen:
            assert seen[s["id"]] == s, f"one id, two different samples:\n{seen[s['id']]}\n{s}"
        seen[s["id"]] = s
    return list(seen.values())


def assert_common(samples: list[dict], subject: str, vendor: str) -> None:
    assert samples
    for s in samples:
        assert s["subject"] == subject, s
        assert s["source"]["kind"] == "cloud" and s["source"]["vendor"] == vendor, s
        assert s["start"].endswith("Z") and (("end" not in s) or s["end"].endswith("Z")), s
        assert pgtest.UUID_V8_RE.match(s["id"]), s


def by_metric(samples: list[dict], metric: str) -> list[dict]:
    return sorted((s for s in samples if s["metric"] == metric), key=lambda s: s["start"])


def assert_tokens_sealed(env: Env) -> None:
    """Every token the vendor issued is nowhere in the store's bytes in plain text."""
    issued = list(env.emu.access_tokens) + list(env.emu.refresh_tokens)
    assert issued, "the emulator issued no token"
    raw = acc.store_bytes(env.daemon)
    assert raw, "no store file"
    leaked = [t[:12] + "…" for t in issued if t.encode() in raw]
    assert not leaked, f"tokens stored in plain text: {leaked}"


def unlink_and_check(env: Env, conn: dict, subject: str, via: str) -> None:
    """Unlink: 204, gone from the connections, revoked at the vendor, unlinked + tombstone events."""
    revocations = len(env.emu.state(brief=True)["revocations"])
    r = acc.unlink(env.daemon, env.key, conn["id"])
    assert r.status_code == 204, r.text
    assert acc.connections(env.daemon, env.key, subject) == []
    recorded = env.emu.state(brief=True)["revocations"][revocations:]
    assert [rv["via"] for rv in recorded] == [via], recorded

    def unlinked_events():
        mine = [e for e in acc.events(env.daemon) if e["subject"] == subject and e["source"]["vendor"] == env.vendor]
        kinds = [e["event"] for e in mine]
        return mine if "connection.unlinked" in kinds and "tombstone" in kinds else None

    mine = pgtest.wait_until(unlinked_events, timeout=15, message="no connection.unlinked + tombstone in the sink")
    kinds = [e["event"] for e in mine]
    assert kinds.index("connection.linked") < kinds.index("connection.unlinked"), kinds
    # The unlink is followed by its tombstone: forget every sample of this subject from this vendor.
    assert "tombstone" in kinds[kinds.index("connection.unlinked"):], kinds
    tomb = [e for e in mine if e["event"] == "tombstone"]
    assert any("record_id" not in e["source"] for e in tomb), f"no whole-connection tombstone: {tomb}"


def forged_rejected(env: Env, attempts: list[tuple[str, bytes, dict]]) -> None:
    """Each (label, body, headers) is answered 401, stores nothing, and counts as rejected_*."""
    before = acc.webhooks_rejected(env.daemon, env.vendor)
    inbox = env.inbox_rows()
    for label, body, headers in attempts:
        r = env.post_webhook(body, headers)
        assert r.status_code == 401, f"{label}: {r.status_code} {r.text[:200]}"
    assert env.inbox_rows() == inbox, "a rejected webhook left a row in webhook_inbox"
    assert acc.webhooks_rejected(env.daemon, env.vendor) == before + len(attempts)


# --------------------------------------------------------------------------------------------------
# Polar


def test_polar_link_exercise_webhook_samples_unlink(start):
    env = start("polar")
    conn = env.link("member-polar")
    # The webhook exists already for our URL: kept, not created again (Polar allows one per app).
    pgtest.wait_until(lambda: env.requests_to("GET /v3/webhooks"), timeout=10)
    assert env.requests_to("POST /v3/webhooks") == 0

    start_utc = utc_midnight(1) + 9 * 3600 + 17                        # yesterday 09:00:17 UTC
    ex = env.emu.create_exercise(475, start=start_utc, seconds=90, recording_rate=1, utc_offset_min=120,
                                 null_ranges=[[40, 43]], rr=True, notify=True)
    assert ex["start-time"].startswith(datetime.fromtimestamp(start_utc + 7200, timezone.utc)
                                       .strftime("%Y-%m-%dT%H:%M:%S")), "local time expected in start-time"
    assert_delivered(ex["webhook"], "polar")
    series = {s["sample-type"]: [None if v == "null" else float(v) for v in s["data"].split(",")]
              for s in ex["samples"]}
    hr_expected = [(start_utc + i, v) for i, v in enumerate(series["0"]) if v is not None]

    def exercise_samples():
        return unique([s for s in acc.samples(env.daemon, "polar") if s["source"].get("record_id") == ex["id"]])

    pgtest.wait_until(lambda: len(by_metric(exercise_samples(), "heart_rate")) == len(hr_expected), timeout=20,
                      message=lambda: f"heart rate samples: {len(by_metric(exercise_samples(), 'heart_rate'))} "
                                      f"of {len(hr_expected)}\n{env.daemon.tail(20)}")
    got = exercise_samples()
    assert_common(got, "member-polar", "polar")
    assert all(s["source"].get("device") == {"model": "Polar Vantage V2", "serial": "1111AAAA"} for s in got), got[0]

    hr = by_metric(got, "heart_rate")
    # Local 11:00:17 at UTC+2 is 09:00:17Z: the offset is applied, the dropout emits nothing.
    assert [(s["start"], s["value"]) for s in hr] == [(iso(t), v) for t, v in hr_expected]
    assert all(s["unit"] == "/min" for s in hr)

    speed = by_metric(got, "speed")
    want = [(start_utc + i, v / 3.6) for i, v in enumerate(series["1"]) if v is not None]
    assert [s["start"] for s in speed] == [iso(t) for t, _ in want]
    assert all(s["unit"] == "m/s" for s in speed), "speed is canonical m/s (Polar sends km/h)"
    assert all(math.isclose(s["value"], v, rel_tol=1e-9) for s, (_, v) in zip(speed, want))

    cadence = by_metric(got, "cadence")
    assert [s["value"] for s in cadence] == [v for v in series["2"] if v is not None]
    assert all(s["unit"] == "/min" for s in cadence)
    altitude = by_metric(got, "altitude")
    assert [s["value"] for s in altitude] == [v for v in series["3"] if v is not None]
    assert all(s["unit"] == "m" for s in altitude)

    # Cumulative distance → the distance covered between consecutive known points (across the dropout).
    known = [(start_utc + i, v) for i, v in enumerate(series["10"]) if v is not None]
    want_d = [(t0, t1, v1 - v0) for (t0, v0), (t1, v1) in zip(known, known[1:]) if v1 > v0]
    distance = by_metric(got, "distance")
    assert [(s["start"], s["end"]) for s in distance] == [(iso(a), iso(b)) for a, b, _ in want_d]
    assert all(math.isclose(s["value"], d, abs_tol=1e-6) and s["unit"] == "m" for s, (_, _, d) in zip(distance, want_d))

    # RR intervals: each beat where the intervals before it add up to.
    rr_values = [float(v) for v in next(s for s in ex["samples"] if s["sample-type"] == "11")["data"].split(",")]
    elapsed, want_rr = 0.0, []
    for v in rr_values:
        elapsed += v
        want_rr.append((pgtest.iso(start_utc * 1000 + int(round(elapsed))), v))
    rr = by_metric(got, "rr_interval")
    assert [(s["start"], s["value"]) for s in rr] == want_rr
    assert all(s["unit"] == "ms" for s in rr)
    assert len(got) == len(hr) + len(speed) + len(cadence) + len(altitude) + len(distance) + len(rr)
    assert env.requests_to(DATA_ROUTES["polar"]) == 1

    # Continuous heart rate carries wall-clock times and no zone: the exercise's offset (+02:00) is used,
    # so local midnight of the day is 22:00Z the day before.
    pgtest.wait_until(lambda: not acc.store_rows(env.daemon, "SELECT id FROM job"), timeout=10)
    date = datetime.fromtimestamp(start_utc, timezone.utc).date().isoformat()
    day = env.emu.create_continuous_hr(475, date, interval_s=3600, values=[50 + i for i in range(24)], notify=True)
    assert_delivered(day["webhook"], "polar")
    record = f"continuous-heart-rate/{date}"

    def day_samples():
        return unique([s for s in acc.samples(env.daemon, "polar") if s["source"].get("record_id") == record])

    pgtest.wait_until(lambda: len(day_samples()) == 24, timeout=20, message=lambda: env.daemon.tail(20))
    midnight = parse_iso(f"{date}T00:00:00Z") - 7200
    assert [(s["start"], s["value"], s["unit"], s["metric"]) for s in sorted(day_samples(), key=lambda s: s["start"])] \
        == [(iso(midnight + 3600 * i), 50 + i, "/min", "heart_rate") for i in range(24)]
    assert_common(day_samples(), "member-polar", "polar")
    assert_tokens_sealed(env)
    unlink_and_check(env, conn, "member-polar", via="deregister")
    assert env.emu.state(user=475)["user"]["revocations"] == 1
    assert_sink_valid(env.daemon)


def test_polar_creates_its_webhook_and_keeps_the_signing_key(start):
    # No webhook at Polar and no key in the config: the daemon must create the webhook (Polar PINGs the
    # URL during the call) and keep the signature_secret_key from the answer, sealed.
    env = start("polar", subscribed=False)
    assert "webhook" not in env.daemon.config["vendors"]["polar"]
    subs = pgtest.wait_until(lambda: env.emu.state(brief=True)["subscriptions"], timeout=15,
                             message=lambda: env.daemon.tail(20))
    assert len(subs) == 1
    assert subs[0]["url"] == env.webhook_url
    assert sorted(subs[0]["events"]) == ["CONTINUOUS_HEART_RATE", "EXERCISE", "SLEEP"]
    assert acc.metric_value(env.daemon, "pulsegate_webhooks_total", vendor="polar", outcome="handshake") == 1
    assert env.inbox_rows() == [], "the PING was stored as a notification"
    key = env.emu.webhook_secret
    assert key
    stored = dict(acc.store_rows(env.daemon, "SELECT key, value FROM vendor_state WHERE vendor = 'polar'"))
    assert stored.get("secret:signature_secret_key"), f"the key was not kept: {sorted(stored)}"
    assert json.loads(stored["webhook_id"]) == subs[0]["id"]
    assert key.encode() not in acc.store_bytes(env.daemon), "the webhook key is stored in plain text"

    conn = env.link("member-polar-2")
    ex = env.emu.create_exercise(475, seconds=30, notify=True)
    assert_delivered(ex["webhook"], "polar")
    pgtest.wait_until(lambda: [s for s in acc.samples(env.daemon, "polar") if s["source"].get("record_id") == ex["id"]],
                      timeout=20, message=lambda: env.daemon.tail(20))

    # After a restart the kept key still verifies, and the webhook is not created a second time.
    assert env.daemon.stop() == 0
    env.daemon.start()
    pgtest.wait_until(lambda: env.requests_to("GET /v3/webhooks") >= 2, timeout=10)
    assert env.requests_to("POST /v3/webhooks") == 1
    ex2 = env.emu.create_exercise(475, seconds=30, notify=True)
    assert_delivered(ex2["webhook"], "polar")
    pgtest.wait_until(lambda: [s for s in acc.samples(env.daemon, "polar")
                               if s["source"].get("record_id") == ex2["id"]],
                      timeout=20, message=lambda: env.daemon.tail(20))
    # A notification signed with any other key is still refused.
    body = polar_emu.compact({"event": "EXERCISE", "user_id": 475, "entity_id": ex2["id"],
                              "timestamp": "2026-11-20T10:00:00.000Z"})
    forged_rejected(env, [("other key", body, {"Polar-Webhook-Signature": polar_emu.sign("not-the-key", body)})])
    assert acc.connections(env.daemon, env.key, "member-polar-2")[0]["id"] == conn["id"]
    assert_sink_valid(env.daemon)


def test_polar_webhook_security_and_ping(start):
    env = start("polar")
    secret = env.emu.webhook_secret
    body = polar_emu.compact({"event": "EXERCISE", "user_id": 475, "entity_id": "aQlC83",
                              "timestamp": "2026-11-20T10:00:00.000Z",
                              "url": env.emu.url("/v3/exercises/aQlC83")})
    forged_rejected(env, [
        ("no signature", body, {"Polar-Webhook-Event": "EXERCISE"}),
        ("wrong key", body, {"Polar-Webhook-Signature": polar_emu.sign("wrong-" + secret, body)}),
        ("signature of other bytes", body, {"Polar-Webhook-Signature": polar_emu.sign(secret, body + b" ")}),
        ("not hex", body, {"Polar-Webhook-Signature": "zz" * 32}),
    ])
    labels = {l["outcome"] for n, l, v in env.daemon.metrics()
              if n == "pulsegate_webhooks_total" and l.get("vendor") == "polar" and v > 0}
    assert {"rejected_missing_signature", "rejected_bad_signature"} <= labels, labels

    # PING (made when a webhook is created, before any key exists): 200, nothing stored.
    ping = polar_emu.compact({"timestamp": "2026-11-20T10:00:00.000Z", "event": "PING"})
    r = env.post_webhook(ping, {"Polar-Webhook-Event": "PING"})
    assert r.status_code == 200, r.text
    assert env.inbox_rows() == []

    # The control: the same body correctly signed is accepted and stored once.
    r = env.post_webhook(body, {"Polar-Webhook-Signature": polar_emu.sign(secret, body)})
    assert r.status_code == 200, r.text
    assert len(env.inbox_rows()) == 1


class _Recorder:
    """A tiny HTTP server standing in for a host a forged payload points at; records every request."""

    def __init__(self):
        self.requests: list[str] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _any(self):
                recorder.requests.append(f"{self.command} {self.path}")
                body = b'{"id":"x","start-time":"2026-11-20T08:00:00","start-time-utc-offset":0,"samples":[]}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_HEAD = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def other_host():
    r = _Recorder()
    yield r
    r.close()


def test_polar_payload_url_on_another_host_is_not_fetched(start, other_host):
    env = start("polar")
    env.link("member-polar-ssrf")
    ex = env.emu.create_exercise(475, seconds=30)
    evil = f"http://127.0.0.1:{other_host.port}/v3/exercises/{ex['id']}"
    assert_delivered(env.emu.send_webhook(event="EXERCISE", user_id=475, entity_id=ex["id"], url=evil), "polar")
    # The emulator's own notifications pointing elsewhere (notification_url_base) are refused the same way.
    env.emu.configure(notification_url_base=f"http://127.0.0.1:{other_host.port}")
    ex2 = env.emu.create_exercise(475, seconds=30, notify=True)
    assert_delivered(ex2["webhook"], "polar")
    assert json.loads(ex2["webhook"]["body"])["url"].startswith(f"http://127.0.0.1:{other_host.port}/")

    def parked():
        return acc.metric_value(env.daemon, "pulsegate_vendor_jobs_total", vendor="polar", outcome="parked") >= 2

    pgtest.wait_until(parked, timeout=20, message=lambda: env.daemon.tail(20))
    jobs = acc.store_rows(env.daemon, "SELECT last_error FROM job WHERE vendor = 'polar' AND kind = 'fetch'")
    assert len(jobs) == 2, jobs
    for (error,) in jobs:
        assert error.startswith("parked") and f"127.0.0.1:{other_host.port}" in error, error
    assert other_host.requests == [], f"the daemon fetched from the other host: {other_host.requests}"
    assert env.requests_to(DATA_ROUTES["polar"]) == 0
    assert acc.samples(env.daemon, "polar") == []


# --------------------------------------------------------------------------------------------------
# Oura


def test_oura_link_subscriptions_webhooks_samples_unlink(start):
    # No subscriptions at Oura: the daemon creates them (Oura checks each with the verification GET).
    env = start("oura", subscribed=False)
    subs = pgtest.wait_until(lambda: (s := env.emu.state(brief=True)["subscriptions"]) and len(s) >= 9 and s,
                             timeout=15, message=lambda: env.daemon.tail(20))
    assert sorted((s["data_type"], s["event_type"]) for s in subs) == sorted(
        (d, e) for d in ("sleep", "daily_activity", "workout") for e in ("create", "update", "delete"))
    assert all(s["callback_url"] == env.webhook_url and not s["expired"] for s in subs)
    assert acc.metric_value(env.daemon, "pulsegate_webhooks_total", vendor="oura", outcome="handshake") == 9
    kept = pgtest.wait_until(lambda: acc.store_rows(
        env.daemon, "SELECT value FROM vendor_state WHERE vendor = 'oura' AND key = 'subscriptions'"), timeout=10)
    assert {v["id"] for v in json.loads(kept[0][0]).values()} == {s["id"] for s in subs}

    # A user one hour east of UTC: Oura writes local times with +01:00, the sink must hold UTC.
    env.emu.create_user("oura-east", utc_offset_s=3600)
    conn = env.link("member-oura", user="oura-east")

    now = int(time.time())
    base = now - now % 300
    awake = env.emu.create_heartrate("oura-east", start=base - 7200, seconds=1800, interval_s=300, source="awake")
    bedtime = base - 6 * 3600
    # Rows measured during sleep come again in the sleep document: they must not be mapped twice.
    asleep = env.emu.create_heartrate("oura-east", start=bedtime + 150, seconds=1200, interval_s=300, source="sleep")
    sleep = env.emu.create_sleep("oura-east", bedtime_start=bedtime, seconds=7200, notify=True)
    assert sleep["bedtime_start"].endswith("+01:00"), sleep["bedtime_start"]
    assert_delivered(sleep["webhook"], "oura")
    day = datetime.fromtimestamp(utc_midnight(3), timezone.utc).date().isoformat()
    activity = env.emu.create_daily_activity("oura-east", day=day, steps=8765, notify=True)
    assert_delivered(activity["webhook"], "oura")

    def ready():
        got = unique(acc.samples(env.daemon, "oura"))
        return (by_metric(got, "step_count") and by_metric(got, "resting_heart_rate")
                and any("record_id" not in s["source"] for s in by_metric(got, "heart_rate")))

    pgtest.wait_until(ready, timeout=20, message=lambda: env.daemon.tail(20))
    got = unique(acc.samples(env.daemon, "oura"))
    assert_common(got, "member-oura", "oura")
    of_sleep = [s for s in got if s["source"].get("record_id") == sleep["id"]]
    bs, be = parse_iso(sleep["bedtime_start"]), parse_iso(sleep["bedtime_end"])
    assert bs == bedtime and be == bedtime + 7200

    # Stages: runs of equal 5-minute phases from bedtime_start (UTC), vendor computed.
    phases = sleep["sleep_phase_5_min"]
    names = {"1": "deep", "2": "light", "3": "rem", "4": "awake"}
    want_stages, i = [], 0
    while i < len(phases):
        j = i
        while j < len(phases) and phases[j] == phases[i]:
            j += 1
        want_stages.append((iso(bs + i * 300), iso(min(bs + j * 300, be)), names[phases[i]]))
        i = j
    stages = by_metric(of_sleep, "sleep_stage")
    assert [(s["start"], s["end"], s["value"]) for s in stages] == want_stages
    assert all(s["unit"] == "{stage}" and s["quality"] == ["vendor_computed"] for s in stages)

    items = sleep["heart_rate"]["items"]
    hr = by_metric(of_sleep, "heart_rate")
    assert [(s["start"], s["value"]) for s in hr] == [(iso(bs + k * 300), v) for k, v in enumerate(items)
                                                      if v is not None]
    assert all(s["unit"] == "/min" for s in hr)
    hrv = by_metric(of_sleep, "hrv_rmssd")
    assert [(s["start"], s["value"]) for s in hrv] == [(iso(bs + k * 300), v) for k, v in
                                                       enumerate(sleep["hrv"]["items"]) if v]
    assert all(s["unit"] == "ms" for s in hrv)
    [resting] = by_metric(of_sleep, "resting_heart_rate")
    assert (resting["start"], resting["value"], resting["unit"]) == (iso(be), sleep["lowest_heart_rate"], "/min")
    assert resting["quality"] == ["vendor_computed"]
    assert len(of_sleep) == len(stages) + len(hr) + len(hrv) + 1

    # The time series, fetched after the sleep notification (the ring synced): awake rows only.
    series = [s for s in by_metric(got, "heart_rate") if "record_id" not in s["source"]]
    assert [(s["start"], s["value"]) for s in series] == [(iso(parse_iso(r["timestamp"])), r["bpm"])
                                                           for r in awake["data"]]
    sleep_times = {iso(parse_iso(r["timestamp"])) for r in asleep["data"]}
    assert not sleep_times & {s["start"] for s in by_metric(got, "heart_rate")}, "source=sleep rows were mapped"

    # The activity day runs 24 h from 04:00 local = 03:00Z.
    of_day = [s for s in got if s["source"].get("record_id") == activity["id"]]
    day_start = parse_iso(activity["timestamp"])
    assert iso(day_start) == f"{day}T03:00:00.000Z"
    assert sorted((s["metric"], s["value"], s["unit"], s["start"], s["end"]) for s in of_day) == sorted([
        ("step_count", 8765, "{steps}", iso(day_start), iso(day_start + 86400)),
        ("active_energy", activity["active_calories"], "kcal", iso(day_start), iso(day_start + 86400))])

    assert env.requests_to(DATA_ROUTES["oura"]) == 2

    # The sleep deleted at Oura: a tombstone for that one record, nothing fetched.
    gone = env.emu.send_webhook(event_type="delete", data_type="sleep", object_id=sleep["id"], user_id="oura-east")
    assert_delivered(gone, "oura")
    tomb = pgtest.wait_until(lambda: [e for e in acc.events(env.daemon, "tombstone")
                                      if e["source"].get("record_id") == sleep["id"]], timeout=15)
    assert tomb[0]["subject"] == "member-oura" and tomb[0]["source"]["vendor"] == "oura", tomb
    assert env.requests_to(DATA_ROUTES["oura"]) == 2
    assert_tokens_sealed(env)
    unlink_and_check(env, conn, "member-oura", via="revoke")
    assert_sink_valid(env.daemon)


def test_oura_renews_its_expiring_subscriptions_only(start):
    elsewhere = "https://other-deployment.example/v1/webhooks/oura"

    def prepare(emu):
        # Subscriptions for every data type and event type exist already, for our callback and for
        # another deployment's, all expiring in 3 days; renewals from now on last 30 days.
        with emu.lock:
            emu.preprovision_webhook(elsewhere)
        emu.configure(subscription_ttl_s=30 * 86400)

    env = start("oura", emu_options={"subscription_ttl_s": 3 * 86400}, prepare=prepare)
    ours = {(d, e) for d in ("sleep", "daily_activity", "workout") for e in ("create", "update", "delete")}

    def renewed():
        subs = env.emu.state(brief=True)["subscriptions"]
        far = [s for s in subs if parse_iso(s["expiration_time"]) - time.time() > 20 * 86400]
        return subs if len(far) >= 9 else None

    subs = pgtest.wait_until(renewed, timeout=15, message=lambda: env.daemon.tail(20))
    assert len(subs) == 2 * 17 * 3
    far = [s for s in subs if parse_iso(s["expiration_time"]) - time.time() > 20 * 86400]
    assert sorted((s["data_type"], s["event_type"]) for s in far) == sorted(ours)
    assert all(s["callback_url"] == env.webhook_url for s in far), "another deployment's subscription was renewed"
    assert env.requests_to("PUT /v2/webhook/subscription/renew/{sub_id}") == 9
    assert env.requests_to("POST /v2/webhook/subscription") == 0, "existing subscriptions were created again"
    assert all(parse_iso(s["expiration_time"]) - time.time() < 4 * 86400 for s in subs if s not in far)
    kept = json.loads(acc.store_rows(
        env.daemon, "SELECT value FROM vendor_state WHERE vendor = 'oura' AND key = 'subscriptions'")[0][0])
    assert {v["id"] for v in kept.values()} == {s["id"] for s in far}


def test_oura_webhook_security_and_verification(start):
    env = start("oura")
    token = env.daemon.config["vendors"]["oura"]["webhook"]["verification_token"]
    # The verification GET: the challenge comes back as JSON only with the right token.
    r = requests.get(env.webhook_url, params={"verification_token": token, "challenge": "ch-4711"}, timeout=10)
    assert r.status_code == 200 and r.json() == {"challenge": "ch-4711"}, r.text
    for params in ({"verification_token": "wrong", "challenge": "ch-4712"}, {"challenge": "ch-4713"}):
        r = requests.get(env.webhook_url, params=params, timeout=10)
        assert r.status_code == 401 and "ch-47" not in r.text, (params, r.status_code, r.text)

    body = oura_emu.compact({"event_type": "create", "data_type": "sleep",
                             "object_id": "8f1d9c0e-1111-2222-3333-444455556666",
                             "event_time": "2026-11-20T07:05:00+00:00", "user_id": "user-123"})
    now = str(int(time.time()))
    stale = str(int(time.time()) - 3600)
    good = oura_emu.sign(acc.CLIENT_SECRET, now, body)
    forged_rejected(env, [
        ("no signature", body, {"x-oura-timestamp": now}),
        ("no timestamp", body, {"x-oura-signature": good}),
        ("wrong secret", body, {"x-oura-timestamp": now, "x-oura-signature": oura_emu.sign("wrong", now, body)}),
        ("other timestamp", body, {"x-oura-timestamp": str(int(now) - 1), "x-oura-signature": good}),
        ("stale", body, {"x-oura-timestamp": stale, "x-oura-signature": oura_emu.sign(acc.CLIENT_SECRET, stale, body)}),
    ])
    # The control: correctly signed, now → accepted (lower-case hex too) and stored once.
    r = env.post_webhook(body, {"x-oura-timestamp": now, "x-oura-signature": good.lower()})
    assert r.status_code in SUCCESS["oura"], r.text
    assert len(env.inbox_rows()) == 1


# --------------------------------------------------------------------------------------------------
# Fitbit (Google Health API)


def test_fitbit_link_webhooks_samples_unlink(start):
    env = start("fitbit")
    uid = env.emu.default_user_id
    conn = env.link("member-fitbit")

    t0 = utc_midnight(1) + 12 * 3600                                    # yesterday 12:00 UTC
    hr = env.emu.create_data_points(uid, type="heart-rate", start=t0, seconds=60, interval_s=5, notify=True)
    steps = env.emu.create_data_points(uid, type="steps", start=t0 + 600, seconds=300, interval_s=60, notify=True)
    hrv = env.emu.create_data_points(uid, type="heart-rate-variability", start=t0 + 1200, seconds=900,
                                     interval_s=300, notify=True)
    weight = env.emu.create_data_points(uid, type="weight", start=t0 + 3600, seconds=60, base=72500, notify=True)
    for made in (hr, steps, hrv, weight):
        assert_delivered(made["webhook"], "fitbit")
        assert json.loads(made["webhook"]["body"])["data"]["healthUserId"] == uid

    want = {
        "heart_rate": [(p["heartRate"]["sampleTime"]["physicalTime"], float(p["heartRate"]["beatsPerMinute"]))
                       for p in hr["dataPoints"]],
        "step_count": [(p["steps"]["interval"]["startTime"], p["steps"]["interval"]["endTime"],
                        float(p["steps"]["count"])) for p in steps["dataPoints"]],
        "hrv_rmssd": [(p["heartRateVariability"]["sampleTime"]["physicalTime"],
                       p["heartRateVariability"]["rootMeanSquareOfSuccessiveDifferencesMilliseconds"])
                      for p in hrv["dataPoints"]],
        "body_weight": [(p["weight"]["sampleTime"]["physicalTime"], p["weight"]["weightGrams"] / 1000)
                        for p in weight["dataPoints"]],
    }
    assert len(want["heart_rate"]) == 12 and len(want["step_count"]) == 5 and len(want["body_weight"]) == 1

    def complete():
        got = unique(acc.samples(env.daemon, "fitbit"))
        return all(len(by_metric(got, m)) >= len(w) for m, w in want.items())

    pgtest.wait_until(complete, timeout=20, message=lambda: (
        f"{Counter(s['metric'] for s in acc.samples(env.daemon, 'fitbit'))} of "
        f"{ {m: len(w) for m, w in want.items()} }\n{env.daemon.tail(20)}"))
    got = unique(acc.samples(env.daemon, "fitbit"))
    assert_common(got, "member-fitbit", "fitbit")

    def at(text):  # Google's physical times are RFC 3339 UTC
        return iso(parse_iso(text))

    heart = by_metric(got, "heart_rate")
    assert [(s["start"], s["value"]) for s in heart] == [(at(t), v) for t, v in want["heart_rate"]], \
        "every reading of the announced range, the last one included"
    assert all(s["unit"] == "/min" for s in heart)
    assert all(s["source"].get("device") == {"manufacturer": "Google", "model": "Pixel Watch 3"} for s in heart)
    assert all("record_id" not in s["source"] for s in heart)
    step = by_metric(got, "step_count")
    assert [(s["start"], s["end"], s["value"]) for s in step] == [(at(a), at(b), v) for a, b, v in want["step_count"]]
    assert all(s["unit"] == "{steps}" for s in step)
    variability = by_metric(got, "hrv_rmssd")
    assert [(s["start"], s["value"]) for s in variability] == [(at(t), v) for t, v in want["hrv_rmssd"]]
    assert all(s["unit"] == "ms" for s in variability)
    [body] = by_metric(got, "body_weight")
    assert body["unit"] == "kg" and body["start"] == at(want["body_weight"][0][0])
    assert math.isclose(body["value"], want["body_weight"][0][1], rel_tol=1e-9), "grams → kg"
    assert body["source"].get("device") == {"manufacturer": "Withings", "model": "Body+"}
    assert body["source"].get("record_id") == weight["dataPoints"][0]["name"].rsplit("/", 1)[-1]
    assert len(got) == 12 + 5 + 3 + 1

    assert env.requests_to(DATA_ROUTES["fitbit"]) == 4
    assert_tokens_sealed(env)
    unlink_and_check(env, conn, "member-fitbit", via="revoke")
    assert_sink_valid(env.daemon)


def test_fitbit_webhook_security_and_verification(start):
    # No pinned key: the daemon reads Google's published Tink keyset (urls.webhook_keyset).
    env = start("fitbit", drop_webhook=("public_key_pem",))
    secret = env.emu.opt("webhook_authorization")

    # Google's two verification POSTs, made by the subscriber create call itself.
    r = requests.post(env.emu.url("/v4/projects/e2e-project/subscribers"), params={"subscriberId": "pulsegate"},
                      headers={"Authorization": "Bearer project-admin"}, timeout=30,
                      json={"endpointUri": env.webhook_url, "endpointAuthorization": {"secret": secret},
                            "subscriberConfigs": [{"dataTypes": ["heart-rate", "steps"],
                                                   "subscriptionCreatePolicy": "AUTOMATIC"}]})
    assert r.status_code == 200 and r.json()["done"], r.text
    # The same checks by hand: 201 with the secret, 401/403 without it or with another one.
    verification = b'{"type": "verification"}'
    r = env.post_webhook(verification, {"Authorization": secret})
    assert r.status_code == 201, r.text
    for headers in ({}, {"Authorization": "Bearer not-the-secret"}):
        r = env.post_webhook(verification, headers)
        assert r.status_code in (401, 403), (headers, r.status_code)
    assert env.inbox_rows() == []

    body = google_emu.compact({"data": {
        "version": "1", "clientProvidedSubscriptionName": "pulsegate", "healthUserId": env.emu.default_user_id,
        "operation": "UPSERT", "dataType": "heart-rate",
        "intervals": [{"physicalTimeInterval": {"startTime": "2026-11-20T06:00:00Z",
                                                "endTime": "2026-11-20T06:05:00Z"}}]}})
    signature = google_emu.sign(env.emu.private_key, env.emu.key_id, body)
    other_key = google_emu.private_key_for_seed("someone-else")
    forged_rejected(env, [
        ("wrong Authorization", body, {"Authorization": "Bearer not-the-secret", "X-HEALTHAPI-SIGNATURE": signature}),
        ("no Authorization", body, {"X-HEALTHAPI-SIGNATURE": signature}),
        ("no signature", body, {"Authorization": secret}),
        ("other key", body, {"Authorization": secret,
                             "X-HEALTHAPI-SIGNATURE": google_emu.sign(other_key, env.emu.key_id, body)}),
        ("signature of other bytes", body + b"\n", {"Authorization": secret, "X-HEALTHAPI-SIGNATURE": signature}),
    ])
    # The control: Authorization and a signature by Google's key → 204, stored once.
    r = env.post_webhook(body, {"Authorization": secret, "X-HEALTHAPI-SIGNATURE": signature})
    assert r.status_code == 204, r.text
    assert len(env.inbox_rows()) == 1
    assert env.requests_to("GET /googlehealthapi/webhooks/webhooks_public_keyset.json") >= 1


# --------------------------------------------------------------------------------------------------
# replays, all three


def _announce(env: Env):
    """Creates data without notifying, then has the vendor deliver its notification twice (same bytes).
    Returns (delivery result, how many samples the data maps to, a predicate for those samples)."""
    emu = env.emu
    if env.vendor == "polar":
        env.link("member-replay")
        ex = emu.create_exercise(475, seconds=20, recording_rate=1)
        result = emu.send_webhook(event="EXERCISE", user_id=475, entity_id=ex["id"], duplicate=True)
        return result, lambda s: s["source"].get("record_id") == ex["id"] and s["metric"] == "heart_rate", 20
    if env.vendor == "oura":
        env.link("member-replay")
        day = datetime.fromtimestamp(utc_midnight(5), timezone.utc).date().isoformat()
        doc = emu.create_daily_activity(emu.default_user_id, day=day, steps=4321)
        result = emu.send_webhook(event_type="create", data_type="daily_activity", object_id=doc["id"],
                                  user_id=emu.default_user_id, duplicate=True)
        return result, lambda s: s["source"].get("record_id") == doc["id"], 2
    env.link("member-replay")
    t0 = utc_midnight(1) + 15 * 3600
    made = emu.create_data_points(emu.default_user_id, type="heart-rate", start=t0, seconds=50, interval_s=5)
    assert len(made["dataPoints"]) == 10
    result = emu.send_webhook(user=emu.default_user_id, data_type="heart-rate", start=t0, end=t0 + 50, duplicate=True)
    return result, lambda s: s["metric"] == "heart_rate", 10


def _resign(env: Env, body: bytes) -> dict:
    """Fresh, valid headers for `body`, as the vendor would send a retry of it."""
    if env.vendor == "polar":
        return {"Polar-Webhook-Signature": polar_emu.sign(env.emu.webhook_secret, body)}
    if env.vendor == "oura":
        ts = str(int(time.time()))
        return {"x-oura-timestamp": ts, "x-oura-signature": oura_emu.sign(acc.CLIENT_SECRET, ts, body)}
    return {"Authorization": env.emu.opt("webhook_authorization"),
            "X-HEALTHAPI-SIGNATURE": google_emu.sign(env.emu.private_key, env.emu.key_id, body)}


@pytest.mark.parametrize("vendor", ["polar", "oura", "fitbit"])
def test_replayed_notification_is_fetched_once(start, vendor):
    env = start(vendor)
    result, mine, count = _announce(env)
    deliveries = result["deliveries"]
    assert len(deliveries) == 2 and deliveries[0]["body"] == deliveries[1]["body"]
    for d in deliveries:
        assert_delivered(d, vendor)
    pgtest.wait_until(lambda: len([s for s in acc.samples(env.daemon, vendor) if mine(s)]) >= count, timeout=20,
                      message=lambda: env.daemon.tail(20))
    pgtest.wait_until(lambda: env.inbox_rows() and all(done for _, done in env.inbox_rows())
                      and not acc.store_rows(env.daemon, "SELECT id FROM job"), timeout=20)

    # Later, the vendor retries the same notification once more (freshly signed): absorbed as well.
    r = env.post_webhook(deliveries[0]["body"].encode(), _resign(env, deliveries[0]["body"].encode()))
    assert r.status_code in SUCCESS[vendor], r.text
    assert acc.metric_value(env.daemon, "pulsegate_webhooks_total", vendor=vendor, outcome="duplicate") == 2
    assert acc.metric_value(env.daemon, "pulsegate_webhooks_total", vendor=vendor, outcome="accepted") == 1
    assert len(env.inbox_rows()) == 1
    assert acc.store_rows(env.daemon, "SELECT id FROM job") == [], "the replay queued a fetch"
    assert env.requests_to(DATA_ROUTES[vendor]) == 1, "the data was fetched more than once"
    got = [s for s in acc.samples(env.daemon, vendor) if mine(s)]
    assert len(got) == count and len({s["id"] for s in got}) == count
    assert_sink_valid(env.daemon)
