"""`pulsegate sensors decode`: the installer's tool. Raw payloads of one sensor in, canonical samples
(schema v1) out, values derived across payloads included; a refused payload is one clear line on
stderr and a non-zero exit, never a crash."""

from __future__ import annotations

import json

import jsonschema

import pgtest

START = "2026-11-20T07:00:00Z"


def decode(pulsegate_bin, *args):
    return pgtest.run_cli(pulsegate_bin, "sensors", "decode", *args, "--start", START)


def lines(p):
    return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]


def test_heart_rate_with_rr_intervals(pulsegate_bin):
    # Flags 0x16: contact supported and detected, RR present; 72 bpm; RR 1024/1024 s.
    p = decode(pulsegate_bin, "ble:2a37", "16 48 00 04", "16490004")
    assert p.returncode == 0, pgtest.cli_result(p)
    out = lines(p)
    schema = json.loads(pgtest.SCHEMA_PATH.read_text())
    for sample in out:
        jsonschema.validate(sample, schema)
    assert [(s["metric"], s["value"]) for s in out] == [
        ("heart_rate", 72), ("rr_interval", 1000), ("heart_rate", 73), ("rr_interval", 1000)]
    assert out[2]["start"] == "2026-11-20T07:00:00.250Z"
    assert all(s["source"]["kind"] == "ble" for s in out)


def test_cadence_is_derived_from_crank_revolutions_across_payloads(pulsegate_bin):
    # Cycling power with crank data: 10 → 11 revolutions, event time 1024 → 2048 (1/1024 s): 60 rpm.
    p = decode(pulsegate_bin, "ble:2a63", "20 00 C8 00 0A 00 00 04", "20 00 C8 00 0B 00 00 08")
    assert p.returncode == 0, pgtest.cli_result(p)
    cadence = [s for s in lines(p) if s["metric"] == "cadence"]
    assert [(s["value"], s.get("quality")) for s in cadence] == [(60, ["derived"])]


def test_ant_heart_rate_page(pulsegate_bin):
    # ANT+ HRM page 4: previous beat 0x0400, this beat 0x0800 (1/1024 s), count 5, 60 bpm → RR 1000 ms.
    p = decode(pulsegate_bin, "ant:hrm", "04 00 00 04 00 08 05 3C")
    assert p.returncode == 0, pgtest.cli_result(p)
    out = lines(p)
    assert ("heart_rate", 60) in [(s["metric"], s["value"]) for s in out]
    assert all(s["source"]["kind"] == "ant" for s in out)


def test_truncated_and_garbage_payloads_are_refused_clearly(pulsegate_bin):
    p = decode(pulsegate_bin, "ble:2a37", "16 48 00 04", "16", "ff ff ff")
    assert p.returncode == 1
    assert len(lines(p)) == 2, "the good payload's samples are still printed"
    assert "payload 2 rejected" in p.stderr and "truncated" in p.stderr
    assert "Traceback" not in p.stderr and "Fatal" not in p.stderr
    bad_hex = decode(pulsegate_bin, "ble:2a37", "zz")
    assert bad_hex.returncode == 64 and "not hex" in bad_hex.stderr
    unknown = decode(pulsegate_bin, "ble:9999", "00")
    assert unknown.returncode == 64 and "ble:2a37" in unknown.stderr
