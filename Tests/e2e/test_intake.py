"""POST /v1/samples: authentication, limits, content types, per-sample validation, conversion, ids."""

from __future__ import annotations

import hashlib
import json
import math
import time

import pytest

import pgtest

WRITER = pgtest.ApiKey("writer")
NO_SCOPE = pgtest.ApiKey("no-scope", scopes=["stream:read"])  # a valid scope, not samples:write
LIMITED = pgtest.ApiKey("limited", requests_per_second=1, burst=2)
MAX_BODY = 64 * 1024


@pytest.fixture(scope="module")
def daemon(pulsegate_bin, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("intake")
    cfg = pgtest.make_config(
        tmp / "state",
        sinks=[pgtest.file_sink("archive")],
        api_keys=[WRITER, NO_SCOPE, LIMITED],
        server={"max_body_bytes": MAX_BODY},
    )
    d = pgtest.Daemon(pulsegate_bin, tmp, cfg, name="intake")
    d.start()
    yield d
    d.close()


def file_sample(daemon, sid: str, timeout: float = 30) -> dict:
    pgtest.wait_file_sink(daemon.state_dir, [sid], timeout, daemon)
    samples, _, _, corrupt = pgtest.read_file_sink(daemon.state_dir)
    assert not corrupt, corrupt[:5]
    return samples[sid]


# ---------------------------------------------------------------------------------------------------
# authentication and request-level errors


def test_missing_key_is_401(daemon):
    r = daemon.post(pgtest.ndjson(pgtest.heart_rates(1)), key=None)
    pgtest.assert_error_body(r, 401)


def test_unknown_key_is_401(daemon):
    r = daemon.post(pgtest.ndjson(pgtest.heart_rates(1)), key=pgtest.ApiKey("stranger"))
    pgtest.assert_error_body(r, 401)


def test_malformed_authorization_is_401(daemon):
    r = daemon.post(pgtest.ndjson(pgtest.heart_rates(1)), key=None, headers={"Authorization": f"Basic {WRITER.key}"})
    pgtest.assert_error_body(r, 401)


def test_key_without_scope_is_403(daemon):
    r = daemon.post(pgtest.ndjson(pgtest.heart_rates(1)), key=NO_SCOPE)
    pgtest.assert_error_body(r, 403)


def test_body_over_max_body_bytes_is_413(daemon):
    samples = pgtest.heart_rates(600, "big")
    body = pgtest.ndjson(samples)
    assert len(body) > MAX_BODY + 1024
    r = daemon.post(body, WRITER)
    pgtest.assert_error_body(r, 413)
    # ... and just under the limit is fine
    small = b""
    for s in samples:
        line = pgtest.dumps(s) + b"\n"
        if len(small) + len(line) > MAX_BODY - 16:
            break
        small += line
    n = small.count(b"\n")
    r = daemon.post(small, WRITER)
    assert r.status_code == 200, f"{len(small)} bytes (limit {MAX_BODY}): {r.status_code} {r.text[:300]}"
    assert r.json()["accepted"] == n


@pytest.mark.parametrize("ctype", ["text/plain", "application/xml", "application/x-www-form-urlencoded"])
def test_other_content_type_is_415(daemon, ctype):
    r = daemon.post(pgtest.ndjson(pgtest.heart_rates(1)), WRITER, content_type=ctype)
    pgtest.assert_error_body(r, 415)


def test_unreadable_json_array_is_400(daemon):
    r = daemon.post(b'[{"subject": "u1", "metric": ', WRITER, content_type="application/json")
    pgtest.assert_error_body(r, 400)


def test_rate_limit_is_429_with_retry_after(daemon):
    statuses = []
    last_429 = None
    for _ in range(10):
        r = daemon.post(pgtest.ndjson(pgtest.heart_rates(1, "limited")), LIMITED)
        statuses.append(r.status_code)
        if r.status_code == 429:
            last_429 = r
    assert statuses[:2] == [200, 200], f"burst 2 must let two requests through: {statuses}"
    assert last_429 is not None, f"10 requests at once with 1 request/s and burst 2: {statuses}"
    assert set(statuses) <= {200, 429}, statuses
    pgtest.assert_error_body(last_429, 429)
    wait = pgtest.retry_after_seconds(last_429.headers.get("Retry-After"))
    assert wait is not None and 0 <= wait <= 60, f"Retry-After {last_429.headers.get('Retry-After')!r}"
    time.sleep(max(wait, 1.0) + 0.2)
    r = daemon.post(pgtest.ndjson(pgtest.heart_rates(1, "limited")), LIMITED)
    assert r.status_code == 200, f"after waiting Retry-After: {r.status_code} {r.text[:200]}"
    # another key is not affected by this key's limit
    daemon.accept(pgtest.heart_rates(1), WRITER)


# ---------------------------------------------------------------------------------------------------
# per-sample validation


def test_mixed_valid_and_invalid_samples(daemon):
    ms = pgtest.alloc_ms(20)
    hr = pgtest.heart_rate
    future = pgtest.now_ms() + 3_600_000
    lines = [
        pgtest.dumps(hr(ms, "mixed")),                                                   # 0 ok
        pgtest.dumps({**hr(ms + 1, "mixed"), "metric": "hartrate"}),                     # 1 unknown metric
        pgtest.dumps({**hr(ms + 2, "mixed"), "unit": "kg"}),                             # 2 wrong unit
        pgtest.dumps(hr(ms + 3, "mixed", value=77)).replace(b'"value":77', b'"value":NaN'),  # 3 NaN token
        pgtest.dumps(hr(future, "mixed")),                                               # 4 future
        pgtest.dumps({"subject": "mixed", "metric": "distance", "value": 12.5, "unit": "m",
                      "start": pgtest.iso(ms + 5), "source": {"kind": "app", "app": "health_connect"}}),  # 5 no end
        pgtest.dumps({"subject": "mixed", "metric": "speed", "value": 18, "unit": "km/h",
                      "start": pgtest.iso(ms + 6), "source": {"kind": "ble"}}),           # 6 ok
        pgtest.dumps({**hr(ms + 7, "mixed"), "end": pgtest.iso(ms + 1007)}),             # 7 instant with end
        pgtest.dumps(hr(ms + 8, "mixed", value=1000)),                                   # 8 out of range
        pgtest.dumps({"subject": "mixed", "metric": "step_count", "value": 120, "unit": "{steps}",
                      "start": pgtest.iso(ms + 9), "end": pgtest.iso(ms + 60_009),
                      "source": {"kind": "app", "app": "apple_health"}}),                # 9 ok
        b"this is not json",                                                             # 10 garbage
    ]
    assert b"NaN" in lines[3]
    r = daemon.post(b"\n".join(lines) + b"\n", WRITER)
    assert r.status_code == 200, f"{r.status_code} {r.text[:500]}"
    body = r.json()
    assert body["accepted"] == 3, json.dumps(body, indent=1)
    rejected = {x["index"]: x["reason"] for x in body["rejected"]}
    assert sorted(rejected) == [1, 2, 3, 4, 5, 7, 8, 10], json.dumps(body, indent=1)
    assert all(isinstance(v, str) and v for v in rejected.values()), body["rejected"]
    assert "hartrate" in rejected[1], rejected[1]
    assert "kg" in rejected[2], rejected[2]
    assert "future" in rejected[4].lower(), rejected[4]
    assert "end" in rejected[5].lower(), rejected[5]
    assert "end" in rejected[7].lower(), rejected[7]
    assert "1000" in rejected[8] or "range" in rejected[8].lower(), rejected[8]
    ids = body["ids"]
    assert len(ids) == len(lines)
    for i, sid in enumerate(ids):
        if i in rejected:
            assert sid is None, f"ids[{i}] = {sid!r} for a rejected sample"
        else:
            assert isinstance(sid, str) and pgtest.UUID_V8_RE.match(sid), f"ids[{i}] = {sid!r}"
    # the valid ones are kept
    for i in (0, 6, 9):
        s = file_sample(daemon, ids[i])
        assert s["subject"] == "mixed"
    assert file_sample(daemon, ids[9])["end"] == pgtest.iso(ms + 60_009)


def test_all_invalid_is_422(daemon):
    ms = pgtest.alloc_ms(2)
    body = pgtest.ndjson([{**pgtest.heart_rate(ms), "metric": "nope"}, {**pgtest.heart_rate(ms + 1), "unit": "W"}])
    r = daemon.post(body, WRITER)
    assert r.status_code == 422, f"{r.status_code} {r.text[:300]}"
    b = r.json()
    assert b["accepted"] == 0 and [x["index"] for x in b["rejected"]] == [0, 1] and b["ids"] == [None, None], b


@pytest.mark.parametrize("bad", [
    {"value": "fast"},                              # category for a numeric metric
    {"value": -5},                                  # below the physical range
    {"start": "2026-02-30T10:00:00.000Z"},          # no such day
    {"start": "1979-12-31T23:59:59.000Z"},          # before 1980
    {"start": "yesterday"},
    {"subject": ""},
    {"subject": "x" * 201},
    {"untis": "/min"},                              # unknown field
    {"source": {"kind": "carrier_pigeon"}},
    {"quality": ["very_good"]},
    {"v": 2},
])
def test_single_invalid_sample_is_rejected_with_reason(daemon, bad):
    s = {**pgtest.heart_rate(pgtest.alloc_ms(1), "single-bad"), **bad}
    r = daemon.post(pgtest.ndjson([s]), WRITER)
    assert r.status_code == 422, f"{bad}: {r.status_code} {r.text[:300]}"
    b = r.json()
    assert b["accepted"] == 0 and len(b["rejected"]) == 1 and b["rejected"][0]["index"] == 0, b
    assert b["rejected"][0]["reason"], b


def test_future_tolerance_is_five_minutes(daemon):
    near = pgtest.heart_rate(pgtest.now_ms() + 60_000, "near-future")       # 1 min ahead: fine
    far = pgtest.heart_rate(pgtest.now_ms() + 10 * 60_000, "far-future")    # 10 min ahead: rejected
    r = daemon.post(pgtest.ndjson([near, far]), WRITER)
    assert r.status_code == 200, r.text
    b = r.json()
    assert b["accepted"] == 1 and [x["index"] for x in b["rejected"]] == [1], b


# ---------------------------------------------------------------------------------------------------
# conversion, ids, formats


def test_unit_conversion_speed_and_weight(daemon):
    ms = pgtest.alloc_ms(2)
    speed = {"subject": "conv", "metric": "speed", "value": 36, "unit": "km/h", "start": pgtest.iso(ms),
             "source": {"kind": "ant", "device": {"manufacturer": "Garmin", "address": "12345"}}}
    weight = {"subject": "conv", "metric": "body_weight", "value": 176.5, "unit": "[lb_av]",
              "start": pgtest.iso(ms + 1), "source": {"kind": "cloud", "vendor": "withings", "record_id": "m-1"}}
    ids = daemon.accept([speed, weight], WRITER)
    s = file_sample(daemon, ids[0])
    assert s["unit"] == "m/s" and math.isclose(s["value"], 10.0, rel_tol=1e-9), s
    w = file_sample(daemon, ids[1])
    assert w["unit"] == "kg" and math.isclose(w["value"], 176.5 * 0.45359237, rel_tol=1e-9), w
    assert w["source"] == {"kind": "cloud", "vendor": "withings", "record_id": "m-1"}, w


def test_same_sample_twice_gets_same_id(daemon):
    s = pgtest.heart_rate(pgtest.alloc_ms(1), "twice", value=101)
    a = daemon.accept([s], WRITER)[0]
    b = daemon.accept([s], WRITER)[0]
    assert a == b
    # the value is not part of the id: a correction keeps it
    c = daemon.accept([{**s, "value": 99}], WRITER)[0]
    assert c == a
    # identity fields are: another subject, start or source gives another id
    others = daemon.accept([
        {**s, "subject": "twice-2"},
        {**s, "start": pgtest.iso(pgtest.alloc_ms(1))},
        {**s, "source": {"kind": "app", "app": "apple_health"}},
    ], WRITER)
    assert len(set(others) | {a}) == 4, others
    # the same id in one batch twice
    d = daemon.accept([s, s], WRITER)
    assert d == [a, a]


def test_supplied_id_must_match(daemon):
    s = pgtest.heart_rate(pgtest.alloc_ms(1), "given-id")
    sid = daemon.accept([s], WRITER)[0]
    assert daemon.accept([{**s, "id": sid}], WRITER) == [sid]
    wrong = "00000000-0000-8000-8000-000000000000"
    r = daemon.post(pgtest.ndjson([{**s, "id": wrong}]), WRITER)
    assert r.status_code == 422, r.text
    assert r.json()["rejected"][0]["index"] == 0


def test_json_array_body(daemon):
    samples = pgtest.heart_rates(3, "array")
    ids_array = daemon.accept(samples, WRITER, fmt="json")
    ids_ndjson = daemon.accept(samples, WRITER, fmt="ndjson")
    assert ids_array == ids_ndjson and len(set(ids_array)) == 3
    for sid in ids_array:
        file_sample(daemon, sid)
    # an invalid element spoils only itself
    bad = [samples[0], {**samples[1], "metric": "nope"}, samples[2]]
    r = daemon.post(json.dumps(bad).encode(), WRITER, content_type="application/json")
    assert r.status_code == 200, r.text
    b = r.json()
    assert b["accepted"] == 2 and [x["index"] for x in b["rejected"]] == [1], b
    assert b["ids"] == [ids_array[0], None, ids_array[2]]


def test_ndjson_blank_lines_and_crlf(daemon):
    samples = pgtest.heart_rates(2, "crlf")
    body = pgtest.dumps(samples[0]) + b"\r\n\r\n" + pgtest.dumps(samples[1]) + b"\r\n"
    r = daemon.post(body, WRITER)
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 2, r.text


def test_output_sample_is_canonical(daemon):
    s = pgtest.heart_rate(pgtest.alloc_ms(1), "canon", value=142)
    s["source"] = {"kind": "ble", "device": {"manufacturer": "Polar", "model": "H10", "address": "A0:9E:1A:00:00:01"}}
    s["quality"] = ["contact_lost"]
    sid = daemon.accept([s], WRITER)[0]
    out = file_sample(daemon, sid)
    assert out == {"v": 1, "id": sid, **s}, out


# ---------------------------------------------------------------------------------------------------
# apikey new


def test_apikey_new_prints_a_working_key(pulsegate_bin, tmp_path, daemon_factory):
    p = pgtest.run_cli(pulsegate_bin, "apikey", "new", "--name", "cli-made", "--scopes", "samples:write",
                       cwd=tmp_path)
    assert p.returncode == 0, pgtest.cli_result(p)
    lines = p.stdout.splitlines()
    assert len(lines) >= 2 and lines[0].startswith("key: ") and lines[1].startswith("sha256: "), p.stdout
    key = lines[0][len("key: "):].strip()
    digest = lines[1][len("sha256: "):].strip()
    assert len(key) >= 20, f"key too short to be a secret: {key!r}"
    assert digest == hashlib.sha256(key.encode()).hexdigest(), (key, digest)
    p2 = pgtest.run_cli(pulsegate_bin, "apikey", "new", "--name", "cli-made", "--scopes", "samples:write",
                        cwd=tmp_path)
    assert p2.returncode == 0 and p2.stdout.splitlines()[0] != lines[0], "two keys must differ"

    api_key = pgtest.ApiKey("cli-made", key=key)
    assert api_key.sha256 == digest
    cfg = pgtest.make_config(tmp_path / "state", sinks=[pgtest.file_sink()], api_keys=[api_key])
    d = daemon_factory(cfg, name="apikey")
    d.start()
    d.accept(pgtest.heart_rates(2, "cli-key"), api_key)
    assert key not in d.stderr_text(), "the API key appears in the log"
