"""Strava end to end: link through the consent page, push subscription made by the daemon, webhook →
fetch → samples with the right values, units and ids, deletion tombstone, deauthorization, unlink."""

from __future__ import annotations

import time

import pytest

import accounts as acc
import pgtest


@pytest.fixture
def strava_daemon(daemon_factory, tmp_path):
    port = pgtest.free_port()
    # The daemon creates the push subscription itself (Strava validates it with hub.challenge).
    emu = acc.start_vendor("strava", port, subscribed=False, sign=False)
    key = acc.links_key()
    daemon = daemon_factory(acc.accounts_config(tmp_path, port, key, {"strava": acc.vendor_config("strava", emu)}))
    daemon.start()
    yield daemon, emu, key
    emu.stop()


def test_link_webhook_fetch_unlink(strava_daemon):
    daemon, emu, key = strava_daemon
    # The subscription: created by the daemon once it listens, validated by Strava's challenge.
    pgtest.wait_until(lambda: emu.state()["subscriptions"], timeout=20)
    sub = emu.state()["subscriptions"][0]
    assert sub["callback_url"] == daemon.url("/v1/webhooks/strava")

    r = acc.link(daemon, key, "strava", "member-1", emu)
    assert r.status_code == 200 and "Strava connected" in r.text, r.text
    [conn] = acc.connections(daemon, key, "member-1")
    assert conn["status"] == "active" and conn["vendor"] == "strava"

    # Tokens are sealed at rest: the access token the emulator issued is nowhere in the store file.
    raw = b"".join(p.read_bytes() for p in daemon.state_dir.glob("pulsegate.sqlite*"))
    issued = list(emu.access_tokens) + list(emu.refresh_tokens)
    assert issued
    for token in issued:
        assert token.encode() not in raw

    act = emu.create_activity(134815, start=int(time.time()) - 3600, seconds=120, notify=True)
    assert act["webhook"]["status"] == 200, act["webhook"]
    assert act["webhook"]["latency_ms"] < 2000, "Strava's deadline"

    def fetched():
        return [s for s in acc.samples(daemon, "strava") if s["source"].get("record_id") == str(act["id"])]
    pgtest.wait_until(lambda: len([s for s in fetched() if s["metric"] == "heart_rate"]) == 120, timeout=30)
    got = fetched()
    hr = sorted((s for s in got if s["metric"] == "heart_rate"), key=lambda s: s["start"])
    assert [s["value"] for s in hr] == act["streams"]["heartrate"]
    assert all(s["unit"] == "/min" and s["subject"] == "member-1" for s in hr)
    assert all(pgtest.UUID_V8_RE.match(s["id"]) for s in got)
    assert len({s["id"] for s in got}) == len(got)
    power = [s for s in got if s["metric"] == "power"]
    assert power and all(s["unit"] == "W" for s in power)

    # The same event delivered again is absorbed; a re-fetch would produce the same ids anyway.
    emu.send_webhook(object_type="activity", object_id=act["id"], aspect_type="create", owner_id=134815)
    time.sleep(1)
    assert len(fetched()) == len(got)

    # The athlete deletes the activity: a tombstone for that record.
    emu.delete_activity(act["id"])
    pgtest.wait_until(lambda: any(e.get("source", {}).get("record_id") == str(act["id"])
                                  for e in acc.events(daemon, "tombstone")), timeout=20)

    # Unlink: revoked at Strava, tokens gone, unlinked + tombstone events.
    assert acc.unlink(daemon, key, conn["id"]).status_code == 204
    assert acc.connections(daemon, key, "member-1") == []
    assert any(r["via"] == "deauthorize" for r in emu.state()["revocations"])
    kinds = [e["event"] for e in acc.events(daemon)]
    assert "connection.linked" in kinds and "connection.unlinked" in kinds


def test_deauthorization_at_strava_revokes_and_tombstones(strava_daemon):
    daemon, emu, key = strava_daemon
    pgtest.wait_until(lambda: emu.state()["subscriptions"], timeout=20)
    assert acc.link(daemon, key, "strava", "member-2", emu).status_code == 200
    emu.revoke_user(134815)
    pgtest.wait_until(lambda: acc.connections(daemon, key, "member-2")[0]["status"] == "revoked", timeout=20)
    tomb = [e for e in acc.events(daemon, "tombstone") if e["subject"] == "member-2"]
    assert tomb and "record_id" not in tomb[0]["source"]
    assert acc.events(daemon, "connection.revoked")
