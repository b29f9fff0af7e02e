"""SIGKILL at random points during intake loses no acknowledged sample.

Several client threads post 100,000 samples as NDJSON batches of 500. Ten times, at a random moment
while batches are being accepted, the daemon gets SIGKILL; it is restarted on the same config and the
clients resend every batch whose answer they did not get. After each restart both sinks (a file sink
and a signed HTTP sink) must end up holding every id that was ever acknowledged; at the end both hold
exactly the ids of all 100,000 samples, with the values that were sent.

Environment: PULSEGATE_KILL_ROUNDS (10), PULSEGATE_KILL_SAMPLES (100000), PULSEGATE_KILL_SEED.
"""

from __future__ import annotations

import collections
import json
import os
import random
import threading
import time

import pytest
import requests

import pgtest

ROUNDS = int(os.environ.get("PULSEGATE_KILL_ROUNDS", "10"))
SAMPLES = int(os.environ.get("PULSEGATE_KILL_SAMPLES", "100000"))
SEED = int(os.environ.get("PULSEGATE_KILL_SEED", "20261123"))
BATCH = 500
CLIENTS = 4
WAIT = 120          # seconds any single wait may take
FINAL_INTAKE = 300  # seconds for the uninterrupted last phase


class BatchPoster:
    """Posts pre-encoded batches from a shared queue; a batch is done only when its 200 arrived."""

    def __init__(self, daemon: pgtest.Daemon, key: pgtest.ApiKey, batches: list[bytes], counts: list[int]):
        self.daemon = daemon
        self.key = key
        self.batches = batches
        self.counts = counts
        self.lock = threading.Lock()
        self.pending: collections.deque[int] = collections.deque(range(len(batches)))
        self.inflight: set[int] = set()
        self.acked: dict[int, list[str]] = {}
        self.round_acked = 0
        self.unexpected: list[str] = []
        self.refusals = collections.Counter()
        self.interrupted = 0  # requests that got no answer (the daemon died under them)

    def idle(self) -> bool:
        with self.lock:
            return not self.pending and not self.inflight

    def acked_ids(self) -> set[str]:
        with self.lock:
            return {i for ids in self.acked.values() for i in ids}

    def _check(self, idx: int, resp: requests.Response) -> list[str] | None:
        try:
            body = resp.json()
        except ValueError:
            body = None
        n = self.counts[idx]
        ok = (isinstance(body, dict) and body.get("accepted") == n and body.get("rejected") == []
              and isinstance(body.get("ids"), list) and len(body["ids"]) == n
              and all(isinstance(i, str) and pgtest.UUID_V8_RE.match(i) for i in body["ids"]))
        if not ok:
            with self.lock:
                self.unexpected.append(f"batch {idx}: 200 with unexpected body {resp.text[:300]}")
            return None
        return body["ids"]

    def worker(self, stop: threading.Event) -> None:
        session = pgtest.http_session()
        while not stop.is_set():
            with self.lock:
                if not self.pending:
                    return
                idx = self.pending.popleft()
                self.inflight.add(idx)
            ids = None
            pause = 0.0
            try:
                r = self.daemon.post(self.batches[idx], self.key, session=session, timeout=60)
                if r.status_code == 200:
                    ids = self._check(idx, r)
                elif r.status_code in (429, 503):
                    with self.lock:
                        self.refusals[r.status_code] += 1
                    pause = min(1.0, pgtest.retry_after_seconds(r.headers.get("Retry-After")) or 0.5)
                else:
                    with self.lock:
                        self.unexpected.append(f"batch {idx}: {r.status_code} {r.text[:300]}")
                    pause = 0.2
            except requests.RequestException:
                # the daemon was killed mid-request, or is not up yet: not acknowledged, send again
                session.close()
                session = pgtest.http_session()
                with self.lock:
                    self.interrupted += 1
                pause = 0.05
            with self.lock:
                self.inflight.discard(idx)
                if ids is not None:
                    self.acked[idx] = ids
                    self.round_acked += 1
                else:
                    self.pending.append(idx)
            if pause:
                stop.wait(pause)

    def start(self, stop: threading.Event) -> list[threading.Thread]:
        threads = [threading.Thread(target=self.worker, args=(stop,), daemon=True, name=f"poster-{i}")
                   for i in range(CLIENTS)]
        for t in threads:
            t.start()
        return threads


@pytest.mark.slow
def test_sigkill_during_intake_loses_no_acknowledged_sample(daemon_factory, receiver, tmp_path):
    ctx = f"[kill9 seed={SEED} rounds={ROUNDS} samples={SAMPLES}]"
    print(f"{ctx} starting; rerun with PULSEGATE_KILL_SEED={SEED} to repeat the same kill points")
    rng = random.Random(SEED)

    first = pgtest.alloc_ms(SAMPLES)
    samples = [pgtest.heart_rate(first + i, subject=f"kill9-{i % 8}", value=40 + i % 150) for i in range(SAMPLES)]
    batches = [pgtest.ndjson(samples[i:i + BATCH]) for i in range(0, SAMPLES, BATCH)]
    counts = [len(samples[i:i + BATCH]) for i in range(0, SAMPLES, BATCH)]

    key = pgtest.ApiKey("kill9")
    state = tmp_path / "state"
    cfg = pgtest.make_config(
        state,
        sinks=[
            pgtest.file_sink("archive", "samples.ndjson", rotate_bytes=4 * 1024 * 1024, keep_files=1000),
            pgtest.http_sink(receiver, "pipeline", batch_size=1000, timeout_seconds=10, initial_ms=50, max_ms=500),
        ],
        api_keys=[key],
        store={"sqlite": {"path": "pulsegate.sqlite", "synchronous": "full"}},
        shutdown={"timeout_seconds": 20},
    )
    daemon = daemon_factory(cfg, name="kill9")
    daemon.start(timeout=90)

    poster = BatchPoster(daemon, key, batches, counts)
    reader = pgtest.FileSinkReader(state)
    mid_intake_kills = 0

    for rnd in range(1, ROUNDS + 1):
        with poster.lock:
            poster.round_acked = 0
            poster.interrupted = 0
            left = len(poster.pending)
        # Spread what is left over the remaining rounds (and a last, kill-free phase), keeping at least
        # one batch for each remaining round so every kill lands while batches are being posted.
        rounds_left = ROUNDS - rnd + 1
        quota = max(1, left // (rounds_left + 1))
        target = rng.randint(1, max(1, 2 * quota - 1))
        target = min(target, max(1, left - rounds_left))
        jitter = rng.uniform(0.0, 0.1)

        stop = threading.Event()
        t0 = time.monotonic()
        threads = poster.start(stop)

        def reached():
            if not daemon.alive():
                raise AssertionError(f"{ctx} round {rnd}: daemon exited on its own "
                                     f"({daemon.proc.returncode})\n" + daemon.tail(60))
            return poster.round_acked >= target or poster.idle()

        pgtest.wait_until(reached, WAIT, 0.005,
                          lambda: f"{ctx} round {rnd}: only {poster.round_acked}/{target} batches acknowledged")
        time.sleep(jitter)
        killed_after = time.monotonic() - t0
        busy = not poster.idle()
        daemon.kill()
        mid_intake_kills += busy
        stop.set()
        for t in threads:
            t.join(timeout=90)
            assert not t.is_alive(), f"{ctx} a client thread hangs after SIGKILL"

        acked = poster.acked_ids()
        t1 = time.monotonic()
        daemon.start(timeout=90)
        receiver.wait_for(acked, WAIT, daemon)
        pgtest.wait_file_sink(state, acked, WAIT, daemon, reader)
        print(f"{ctx} round {rnd}: SIGKILL after {killed_after:.2f}s ({poster.round_acked} batches acked this "
              f"round, target {target}, jitter {jitter:.3f}s, {poster.interrupted} requests cut off{'' if busy else ', intake idle'}); {len(acked)} samples acked in total, "
              f"{len(poster.pending)} batches pending; both sinks caught up {time.monotonic() - t1:.1f}s "
              f"after restart (http {len(receiver.ids)}, file {len(reader.ids)})")

    assert mid_intake_kills >= (ROUNDS + 1) // 2, (
        f"{ctx} test did not do its job: only {mid_intake_kills} of {ROUNDS} kills landed while batches were "
        f"being posted")

    # Last phase: everything still pending, no more kills.
    stop = threading.Event()
    threads = poster.start(stop)

    def all_acked():
        if not daemon.alive():
            raise AssertionError(f"{ctx} final phase: daemon exited ({daemon.proc.returncode})\n" + daemon.tail(60))
        return poster.idle()

    pgtest.wait_until(all_acked, FINAL_INTAKE, 0.1,
                      lambda: f"{ctx} final phase: {len(poster.pending)} batches still not acknowledged")
    stop.set()
    for t in threads:
        t.join(timeout=30)

    assert not poster.unexpected, f"{ctx} unexpected intake answers:\n" + "\n".join(poster.unexpected[:20])
    assert len(poster.acked) == len(batches)
    all_ids_list = [i for idx in range(len(batches)) for i in poster.acked[idx]]
    all_ids = set(all_ids_list)
    assert len(all_ids) == SAMPLES == len(all_ids_list), \
        f"{ctx} {SAMPLES} distinct samples got {len(all_ids)} distinct ids"

    receiver.wait_for(all_ids, WAIT, daemon)
    pgtest.wait_file_sink(state, all_ids, WAIT, daemon, reader)
    rc = daemon.stop(timeout=60)
    assert rc == 0, f"{ctx} SIGTERM after the run: exit {rc}\n" + daemon.tail(40)

    # Exact, fresh checks on the quiet sinks.
    receiver.assert_ok()
    http_ids = receiver.snapshot_ids()
    assert http_ids == all_ids, (f"{ctx} HTTP sink: {len(all_ids - http_ids)} acknowledged ids missing, "
                                 f"{len(http_ids - all_ids)} unknown ids")
    file_samples, _, file_lines, corrupt = pgtest.read_file_sink(state)
    assert not corrupt, f"{ctx} file sink has {len(corrupt)} corrupt lines:\n" + "\n".join(corrupt[:10])
    file_ids = set(file_samples)
    assert file_ids == all_ids, (f"{ctx} file sink: {len(all_ids - file_ids)} acknowledged ids missing, "
                                 f"{len(file_ids - all_ids)} unknown ids")

    # Every id carries the sample that was sent (the value is not part of the id, so check it).
    sent_by_id = {}
    for idx in range(len(batches)):
        for n, sid in enumerate(poster.acked[idx]):
            sent_by_id[sid] = samples[idx * BATCH + n]
    for name, got in (("http", receiver.samples), ("file", file_samples)):
        wrong = []
        for sid, sent in sent_by_id.items():
            s = got[sid]
            if (s.get("subject"), s.get("metric"), s.get("start"), s.get("value"), s.get("unit")) != (
                    sent["subject"], sent["metric"], sent["start"], sent["value"], sent["unit"]):
                wrong.append(f"{sid}: sent {json.dumps(sent)} got {json.dumps(s)}")
        assert not wrong, f"{ctx} {name} sink carries wrong content for {len(wrong)} ids:\n" + "\n".join(wrong[:5])
    print(f"{ctx} done: {SAMPLES} samples, {ROUNDS} SIGKILLs ({mid_intake_kills} during intake), http sink got {receiver.lines_stored} lines "
          f"({receiver.lines_stored - SAMPLES} redeliveries), file sink {file_lines} lines; "
          f"intake refusals {dict(poster.refusals)}")
