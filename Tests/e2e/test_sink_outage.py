"""The only sink goes away: intake goes on up to the high watermark, then refuses with 503 +
Retry-After, loses nothing, and everything arrives once the sink is back."""

from __future__ import annotations

import json

import pytest

import pgtest

HIGH_WATERMARK = 20_000
BATCH = 1_000
RETRY_AFTER = 3


def _ints_in(obj) -> list[int]:
    if isinstance(obj, bool):
        return []
    if isinstance(obj, int):
        return [obj]
    if isinstance(obj, dict):
        return [i for v in obj.values() for i in _ints_in(v)]
    if isinstance(obj, list):
        return [i for v in obj for i in _ints_in(v)]
    return []


@pytest.mark.slow
def test_sink_outage_backpressure_and_recovery(daemon_factory, receiver, tmp_path):
    key = pgtest.ApiKey("outage")
    cfg = pgtest.make_config(
        tmp_path / "state",
        sinks=[pgtest.http_sink(receiver, "pipeline", batch_size=1000, timeout_seconds=5, initial_ms=100, max_ms=1000)],
        api_keys=[key],
        outbox={"high_watermark": HIGH_WATERMARK, "retry_after_seconds": RETRY_AFTER},
    )
    daemon = daemon_factory(cfg, name="outage")
    daemon.start()

    # Healthy: a first 1,000 go through and the outbox empties.
    acked: set[str] = set(daemon.accept(pgtest.heart_rates(BATCH, "outage"), key))
    receiver.wait_for(acked, 60, daemon)
    pgtest.wait_until(lambda: pgtest.outbox_depth(daemon) == 0, 30, 0.2,
                      lambda: f"outbox depth metric stays at {pgtest.outbox_depth(daemon)} after delivery "
                              f"(is there a pulsegate_*outbox*depth* metric?)")

    # Outage.
    receiver.stop()
    accepted_in_outage = 0
    refused = None
    for _ in range(HIGH_WATERMARK // BATCH + 10):
        r = daemon.post_samples(pgtest.heart_rates(BATCH, "outage"), key)
        if r.status_code == 503:
            refused = r
            break
        assert r.status_code == 200, f"intake during the outage: {r.status_code} {r.text[:300]}"
        body = r.json()
        assert body["accepted"] == BATCH and body["rejected"] == [], json.dumps(body)[:500]
        acked.update(body["ids"])
        accepted_in_outage += BATCH
    assert refused is not None, (f"intake never answered 503 with the sink down: {accepted_in_outage} samples "
                                 f"accepted, high_watermark is {HIGH_WATERMARK}")
    assert HIGH_WATERMARK - BATCH < accepted_in_outage <= HIGH_WATERMARK + BATCH, (
        f"503 came after {accepted_in_outage} samples waiting; high_watermark is {HIGH_WATERMARK}")
    pgtest.assert_error_body(refused, 503)
    assert refused.headers.get("Retry-After") == str(RETRY_AFTER), \
        f"Retry-After {refused.headers.get('Retry-After')!r}, outbox.retry_after_seconds is {RETRY_AFTER}"

    # Still refused, and refused requests store nothing (checked at the end: only acked ids arrive).
    for _ in range(3):
        r = daemon.post_samples(pgtest.heart_rates(BATCH, "outage-refused"), key)
        pgtest.assert_error_body(r, 503)
        assert pgtest.retry_after_seconds(r.headers.get("Retry-After")) is not None

    # Liveness stays fine, readiness does not; the depth is visible.
    assert daemon.get("/healthz").status_code == 200
    ready = daemon.get("/readyz")
    assert ready.status_code == 503, f"/readyz with the only sink down: {ready.status_code} {ready.text[:300]}"
    depth = pgtest.outbox_depth(daemon)
    assert depth == accepted_in_outage, f"/metrics outbox depth {depth}, expected {accepted_in_outage}"
    status = daemon.cli("outbox", "status", "--json")
    assert status.returncode == 0, pgtest.cli_result(status)
    status_json = json.loads(status.stdout)
    assert accepted_in_outage in _ints_in(status_json), \
        f"`outbox status --json` does not show the depth {accepted_in_outage}: {status.stdout[:1000]}"

    # Recovery: everything accepted arrives, nothing refused does, intake works again.
    receiver.start()
    receiver.wait_for(acked, 180, daemon)

    def intake_again():
        r = daemon.post_samples(pgtest.heart_rates(10, "outage-after"), key)
        if r.status_code == 200:
            body = r.json()
            assert body["accepted"] == 10, json.dumps(body)
            acked.update(body["ids"])
            return True
        assert r.status_code == 503, f"{r.status_code} {r.text[:300]}"
        return False

    pgtest.wait_until(intake_again, 60, 1.0, "intake still answers 503 after the sink drained the outbox")
    receiver.wait_for(acked, 60, daemon)
    pgtest.wait_until(lambda: pgtest.outbox_depth(daemon) == 0, 30, 0.2, "outbox depth does not return to 0")
    assert pgtest.wait_until(lambda: daemon.get("/readyz").status_code == 200, 60, 0.5,
                             "/readyz stays 503 after the sink recovered")

    receiver.assert_ok()
    got = receiver.snapshot_ids()
    assert got == acked, (f"{len(acked - got)} acknowledged ids missing, {len(got - acked)} ids that were never "
                          f"acknowledged arrived (a 503 must store nothing)")
    assert daemon.stop() == 0
