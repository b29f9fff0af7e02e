"""Faults: invalid configuration, unusable state directory, full disk, a sink answering garbage,
a sink answering 400 (dead letters and replay), bad command lines, doctor."""

from __future__ import annotations

import copy
import json
import resource
import signal
import time

import pytest

import pgtest


def _base(tmp_path, receiver=None, **extra):
    sinks = [pgtest.file_sink("archive")]
    if receiver is not None:
        sinks = [pgtest.http_sink(receiver, "pipeline"), pgtest.file_sink("archive")]
    return pgtest.make_config(tmp_path / "state", sinks=sinks, api_keys=[pgtest.ApiKey("faults")], **extra)


# ---------------------------------------------------------------------------------------------------
# configuration


def _set(cfg: dict, path: list, value) -> dict:
    cfg = copy.deepcopy(cfg)
    node = cfg
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return cfg


BAD_CONFIGS = [
    # (id, path in the config dict, value, key path that must be named)
    ("unknown-top-level-key", ["bogus_section"], {"a": 1}, "bogus_section"),
    ("unknown-nested-key", ["server", "bogus_option"], 1, "server.bogus_option"),
    ("unknown-key-in-list-item", ["sinks", 1, "colour"], "blue", "sinks[1].colour"),
    ("port-wrong-type", ["server", "port"], "eighty", "server.port"),
    ("port-out-of-range", ["server", "port"], 70000, "server.port"),
    ("rotate-bytes-wrong-type", ["sinks", 1, "rotate_bytes"], "lots", "sinks[1].rotate_bytes"),
    ("watermark-wrong-type", ["outbox", "high_watermark"], [1, 2], "outbox.high_watermark"),
    ("url-not-a-url", ["sinks", 0, "url"], "not a url", "sinks[0].url"),
    ("url-wrong-scheme", ["sinks", 0, "url"], "ftp://127.0.0.1/in", "sinks[0].url"),
    ("unknown-sink-type", ["sinks", 1, "type"], "carrier_pigeon", "sinks[1].type"),
    ("bad-api-key-hash", ["api_keys", 0, "sha256"], "not-hex", "api_keys[0].sha256"),
    ("bad-log-level", ["log", "level"], "loud", "log.level"),
]


@pytest.fixture
def valid_config(tmp_path):
    receiver_like = pgtest.SinkReceiver()
    receiver_like.stop()  # only its URL is needed
    cfg = _base(tmp_path, receiver_like, outbox={"high_watermark": 1000})
    return cfg


@pytest.mark.parametrize("case", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_invalid_config_serve_exits_78_naming_key(case, valid_config, daemon_factory):
    _, path, value, key_path = case
    d = daemon_factory(_set(valid_config, path, value), name="badcfg")
    d.start(wait=False)
    rc = d.wait_exit(30)
    err = d.stderr_text()
    assert rc == 78, f"serve with {key_path} invalid: exit {rc}, expected 78\n{d.tail(30)}"
    assert key_path in err, f"stderr does not name {key_path!r}:\n{d.tail(30)}"
    port = d.config["server"]["port"]
    if isinstance(port, int) and 0 < port < 65536:
        assert pgtest.port_refuses(port), "a daemon with an invalid config must not listen"


@pytest.mark.parametrize("case", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_invalid_config_check_exits_78_naming_key(case, valid_config, daemon_factory):
    _, path, value, key_path = case
    d = daemon_factory(_set(valid_config, path, value), name="badcfg")
    p = d.cli("config", "check")
    assert p.returncode == 78, pgtest.cli_result(p)
    assert key_path in p.stdout + p.stderr, f"`config check` does not name {key_path!r}\n" + pgtest.cli_result(p)


def test_valid_config_check_exits_0(valid_config, daemon_factory):
    d = daemon_factory(valid_config, name="goodcfg")
    p = d.cli("config", "check")
    assert p.returncode == 0, pgtest.cli_result(p)


def test_yaml_syntax_error_exits_78(valid_config, daemon_factory):
    d = daemon_factory(valid_config, name="yamlerr")
    d.config_path.write_text("server:\n  port: [1, 2\n  host: x\n")
    p = d.cli("config", "check")
    assert p.returncode == 78, pgtest.cli_result(p)
    d.start(wait=False)
    assert d.wait_exit(30) == 78, d.tail(20)


@pytest.mark.parametrize("var,value,key_path", [
    ("PULSEGATE__SERVER__PORT", "eighty", "server.port"),
    ("PULSEGATE__SINKS__0__URL", "not a url", "sinks[0].url"),
    ("PULSEGATE__OUTBOX__HIGH_WATERMARK", "many", "outbox.high_watermark"),
])
def test_invalid_env_override_exits_78_naming_key(var, value, key_path, valid_config, daemon_factory):
    d = daemon_factory(valid_config, name="badenv")
    p = d.cli("config", "check", env={var: value})
    assert p.returncode == 78, pgtest.cli_result(p)
    assert key_path in p.stdout + p.stderr, pgtest.cli_result(p)
    d.start(wait=False, env={var: value})
    rc = d.wait_exit(30)
    assert rc == 78, d.tail(30)
    assert key_path in d.stderr_text(), d.tail(30)


@pytest.mark.parametrize("argv", [
    ["frobnicate"],
    ["serve", "--no-such-flag"],
    ["outbox", "replay"],             # needs --all or ids
    ["apikey", "new", "--scopes", "samples:write"],  # needs --name
])
def test_bad_command_line_exits_64(argv, pulsegate_bin, tmp_path):
    p = pgtest.run_cli(pulsegate_bin, *argv, timeout=30, cwd=tmp_path)
    assert p.returncode == 64, f"pulsegate {' '.join(argv)}\n" + pgtest.cli_result(p)


# ---------------------------------------------------------------------------------------------------
# state directory


def test_state_directory_under_a_regular_file_exits_73(tmp_path, daemon_factory):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("I am a file\n")
    state = blocker / "state"
    cfg = pgtest.make_config(state, sinks=[pgtest.file_sink()], api_keys=[pgtest.ApiKey()])
    d = daemon_factory(cfg, name="state73")
    d.start(wait=False)
    rc = d.wait_exit(30)
    assert rc == 73, f"exit {rc}, expected 73\n{d.tail(30)}"
    assert str(state) in d.stderr_text() or str(blocker) in d.stderr_text(), \
        f"stderr does not say which directory is unusable ({state}):\n{d.tail(30)}"
    assert blocker.read_text() == "I am a file\n"


def test_state_directory_is_a_regular_file_exits_73(tmp_path, daemon_factory):
    state = tmp_path / "state-file"
    state.write_text("x")
    cfg = pgtest.make_config(state, sinks=[pgtest.file_sink()], api_keys=[pgtest.ApiKey()])
    d = daemon_factory(cfg, name="state73b")
    d.start(wait=False)
    rc = d.wait_exit(30)
    assert rc == 73, f"exit {rc}, expected 73\n{d.tail(30)}"
    assert str(state) in d.stderr_text(), f"stderr does not name {state}:\n{d.tail(30)}"


# ---------------------------------------------------------------------------------------------------
# full disk

FSIZE_LIMIT = 3 * 1024 * 1024


def _limit_file_size():
    # A real full disk makes write() fail with ENOSPC. RLIMIT_FSIZE makes it fail with EFBIG, but the
    # kernel also sends SIGXFSZ, whose default action kills: ignore it so only the write fails.
    resource.setrlimit(resource.RLIMIT_FSIZE, (FSIZE_LIMIT, FSIZE_LIMIT))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


@pytest.mark.slow
def test_full_disk_answers_503_stays_up_and_loses_nothing(tmp_path, daemon_factory, receiver):
    key = pgtest.ApiKey("fsize")
    cfg = pgtest.make_config(
        tmp_path / "state",
        sinks=[pgtest.http_sink(receiver, "pipeline", batch_size=1000, initial_ms=100, max_ms=1000)],
        api_keys=[key],
        outbox={"high_watermark": 10_000_000, "retry_after_seconds": 1},
    )
    d = daemon_factory(cfg, name="fsize", preexec_fn=_limit_file_size, restore_signals=False)
    receiver.stop()  # nothing drains: the store has to fill up
    d.start()

    acked: set[str] = set()
    refused = None
    for _ in range(400):
        r = d.post_samples(pgtest.heart_rates(500, "fsize"), key)
        if r.status_code == 503:
            refused = r
            break
        assert r.status_code == 200, f"intake with a filling disk: {r.status_code} {r.text[:300]}\n{d.tail(20)}"
        body = r.json()
        assert body["accepted"] == 500, json.dumps(body)[:300]
        acked.update(body["ids"])
    assert refused is not None, f"no 503 after {len(acked)} samples with RLIMIT_FSIZE={FSIZE_LIMIT}"
    pgtest.assert_error_body(refused, 503)
    assert pgtest.retry_after_seconds(refused.headers.get("Retry-After")) is not None, \
        f"503 without a usable Retry-After: {dict(refused.headers)}"
    print(f"store full after {len(acked)} acknowledged samples")

    # Still alive, still answering, keeps refusing cleanly.
    for _ in range(3):
        r = d.post_samples(pgtest.heart_rates(500, "fsize-more"), key)
        assert r.status_code in (200, 503), f"{r.status_code} {r.text[:300]}\n{d.tail(20)}"
        if r.status_code == 200:  # SQLite found room after all: still must not lose them
            acked.update(r.json()["ids"])
        time.sleep(0.2)
    assert d.alive(), d.tail(40)
    assert d.get("/healthz").status_code == 200

    # The sink comes back: everything acknowledged arrives, the daemon is still up.
    receiver.start()
    receiver.wait_for(acked, 90, d)
    assert d.alive(), d.tail(40)
    assert d.get("/healthz").status_code == 200
    got = receiver.snapshot_ids()
    assert acked <= got
    assert d.stop() == 0, d.tail(40)


# ---------------------------------------------------------------------------------------------------
# misbehaving sinks


@pytest.mark.slow
def test_sink_answering_garbage_is_retried_until_it_recovers(tmp_path, daemon_factory, receiver):
    key = pgtest.ApiKey("garbage")
    cfg = pgtest.make_config(
        tmp_path / "state",
        sinks=[pgtest.http_sink(receiver, "pipeline", batch_size=100, timeout_seconds=3, initial_ms=50, max_ms=400)],
        api_keys=[key],
    )
    receiver.mode = "garbage"
    d = daemon_factory(cfg, name="garbage")
    d.start()
    acked = set(d.accept(pgtest.heart_rates(250, "garbage"), key))
    pgtest.wait_until(lambda: len(receiver.batch_ids_by_mode["garbage"]) >= 4, 30, 0.1,
                      lambda: f"only {len(receiver.batch_ids_by_mode['garbage'])} delivery attempts in 30s")
    time.sleep(2)
    assert d.alive(), d.tail(40)
    assert not receiver.ids, "nothing can have been stored while the receiver answered garbage"
    receiver.mode = "ok"
    receiver.wait_for(acked, 60, d)
    assert receiver.snapshot_ids() == acked
    # "a retried batch keeps its id": the garbage-answered attempts repeat ids, and the batch that
    # finally got through is one of them
    garbage_ids = receiver.batch_ids_by_mode["garbage"]
    assert len(garbage_ids) > len(set(garbage_ids)), f"retries changed the batch id: {garbage_ids}"
    assert receiver.batch_ids_by_mode["ok"][0] in garbage_ids, "the first delivered batch got a new id"
    assert d.alive() and d.get("/healthz").status_code == 200
    p = d.cli("outbox", "dead-letters", "--json")
    assert p.returncode == 0, pgtest.cli_result(p)
    assert pgtest.dead_letter_entries(p.stdout) == [], f"garbage answers are retried, not poison: {p.stdout[:500]}"
    assert d.stop() == 0


def _poison_setup(tmp_path, daemon_factory, receiver, name):
    key = pgtest.ApiKey(name)
    cfg = pgtest.make_config(
        tmp_path / "state",
        sinks=[pgtest.http_sink(receiver, "pipeline", batch_size=100, initial_ms=50, max_ms=400)],
        api_keys=[key],
    )
    receiver.mode = "400"
    d = daemon_factory(cfg, name=name)
    d.start()
    acked = set(d.accept(pgtest.heart_rates(250, name), key))  # one request: 250 samples, batches of <= 100
    pgtest.wait_until(lambda: receiver.rejected_ids >= acked, 30, 0.1,
                      lambda: f"the 400-answering sink saw {len(receiver.rejected_ids)} of {len(acked)} samples")
    time.sleep(1.5)  # a poison batch must not be retried: give retries a chance to show up
    batch_ids = receiver.batch_ids_by_mode["400"]
    assert len(batch_ids) == len(set(batch_ids)), f"a batch answered 400 was retried: {batch_ids}"
    assert receiver.rejected_ids == acked
    assert all(n <= 100 for _, _, n in receiver.attempts), f"batch larger than batch_size: {receiver.attempts}"

    def dead_letters():
        p = d.cli("outbox", "dead-letters", "--json")
        assert p.returncode == 0, pgtest.cli_result(p)
        return pgtest.dead_letter_entries(p.stdout), p.stdout

    entries, raw = dead_letters()
    assert len(entries) == len(set(batch_ids)), \
        f"{len(set(batch_ids))} batches answered 400 but {len(entries)} dead letters:\n{raw[:2000]}"
    assert "400" in raw, f"dead letters do not carry the status as their reason:\n{raw[:2000]}"
    assert "e2e receiver rejects this batch" in raw, \
        f"dead letters do not carry the start of the answer as their reason:\n{raw[:2000]}"
    return d, key, acked, dead_letters


def test_poison_batches_go_to_dead_letters_and_replay_offline(tmp_path, daemon_factory, receiver):
    d, key, acked, dead_letters = _poison_setup(tmp_path, daemon_factory, receiver, "poison")
    # The sink goes on with the next batch: a sample accepted after the poison ones is delivered.
    receiver.mode = "ok"
    later = set(d.accept(pgtest.heart_rates(5, "poison-later"), key))
    receiver.wait_for(later, 30, d)
    assert not (receiver.snapshot_ids() & acked), "poison batches were delivered without a replay"
    assert d.stop() == 0, d.tail(30)

    # Daemon stopped: the dead letters are still listed, then queued again.
    entries, raw = dead_letters()
    assert entries, "dead letters vanished when the daemon stopped"
    p = d.cli("outbox", "replay", "--all")
    assert p.returncode == 0, pgtest.cli_result(p)
    d.start()
    receiver.wait_for(acked | later, 60, d)
    pgtest.wait_until(lambda: dead_letters()[0] == [], 30, 0.5, lambda: f"dead letters after replay: "
                                                                        f"{dead_letters()[1][:1000]}")
    assert receiver.snapshot_ids() == acked | later
    assert d.stop() == 0


def test_poison_batches_replay_while_running(tmp_path, daemon_factory, receiver):
    d, key, acked, dead_letters = _poison_setup(tmp_path, daemon_factory, receiver, "poison-live")
    receiver.mode = "ok"
    p = d.cli("outbox", "replay", "--all")
    assert p.returncode == 0, pgtest.cli_result(p)
    receiver.wait_for(acked, 60, d)
    pgtest.wait_until(lambda: dead_letters()[0] == [], 30, 0.5, "dead letters remain after a delivered replay")
    assert receiver.snapshot_ids() == acked
    assert d.stop() == 0


# ---------------------------------------------------------------------------------------------------
# doctor


def test_doctor_healthy_and_with_a_sink_down(tmp_path, daemon_factory, receiver):
    cfg = _base(tmp_path, receiver)
    d = daemon_factory(cfg, name="doctor")
    p = d.cli("doctor")
    assert p.returncode == 0, pgtest.cli_result(p)
    assert len([ln for ln in p.stdout.splitlines() if ln.strip()]) >= 4, \
        "doctor prints one verdict per check (config, state directory, store, each sink)\n" + pgtest.cli_result(p)
    receiver.stop()
    p = d.cli("doctor")
    assert p.returncode == 1, pgtest.cli_result(p)
    assert "pipeline" in p.stdout + p.stderr, "doctor does not name the failing sink\n" + pgtest.cli_result(p)


def test_replay_one_dead_letter_by_id(tmp_path, daemon_factory, receiver):
    d, key, acked, dead_letters = _poison_setup(tmp_path, daemon_factory, receiver, "poison-one")
    entries, raw = dead_letters()
    assert len(entries) >= 2, raw
    assert all(isinstance(e, dict) and "id" in e for e in entries), f"dead letters without an id: {raw[:1000]}"
    counts = [e.get("sample_count") for e in entries]
    if all(isinstance(c, int) for c in counts):
        assert sum(counts) == len(acked), f"dead letters hold {sum(counts)} samples, {len(acked)} were refused"
    first = entries[0]
    receiver.mode = "ok"
    p = d.cli("outbox", "replay", str(first["id"]))
    assert p.returncode == 0, pgtest.cli_result(p)
    pgtest.wait_until(lambda: len(dead_letters()[0]) == len(entries) - 1, 30, 0.3,
                      lambda: f"dead letters after replaying #{first['id']}: {dead_letters()[1][:1000]}")
    time.sleep(1)
    got = receiver.snapshot_ids()
    assert got and got < acked, f"replaying one dead letter delivered {len(got)} of {len(acked)} samples"
    if isinstance(first.get("sample_count"), int):
        assert len(got) == first["sample_count"]
    assert d.stop() == 0
