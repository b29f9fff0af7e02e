"""`pulsegate fit decode`: a FIT file in, canonical samples (schema v1, NDJSON) out. A rejected file is
one clear line on stderr naming the file, the reason and the byte offset, and exit 65 (EX_DATAERR);
--salvage prints what came before the damage, says on stderr where it stopped, and exits 0."""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator

import pgtest

FIXTURES = pgtest.REPO_ROOT / "Tests" / "PulseGateFITTests" / "Fixtures"


@pytest.fixture(scope="module")
def validator():
    schema = json.loads(pgtest.SCHEMA_PATH.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def decode(pulsegate_bin, *args):
    return pgtest.run_cli(pulsegate_bin, "fit", "decode", *args)


def lines(p):
    return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]


def test_fenix_run_decodes_to_valid_samples(pulsegate_bin, validator):
    path = FIXTURES / "garmin-fenix5-run-hrv.fit"
    p = decode(pulsegate_bin, str(path), "--subject", "athlete-7")
    assert p.returncode == 0, pgtest.cli_result(p)
    out = lines(p)
    assert out, pgtest.cli_result(p)
    for sample in out:
        validator.validate(sample)
        assert pgtest.UUID_V8_RE.match(sample["id"])
    assert {s["subject"] for s in out} == {"athlete-7"}
    metrics = {s["metric"] for s in out}
    assert {"heart_rate", "speed", "cadence", "distance", "latitude", "longitude", "rr_interval"} <= metrics
    first_hr = next(s for s in out if s["metric"] == "heart_rate")
    assert (first_hr["start"], first_hr["value"], first_hr["unit"]) == ("2017-06-11T14:34:09.000Z", 61, "/min")
    assert all("end" in s for s in out if s["metric"] == "distance")
    device = out[0]["source"]["device"]
    assert out[0]["source"]["kind"] == "file"
    assert (device["manufacturer"], device["model"]) == ("garmin", "fenix5")
    assert "samples from 21 records" in p.stderr
    # Deterministic ids: the same file gives the same samples, byte for byte.
    again = decode(pulsegate_bin, str(path), "--subject", "athlete-7")
    assert again.stdout == p.stdout


def test_merged_strap_heart_rate_is_marked_derived(pulsegate_bin, validator):
    p = decode(pulsegate_bin, str(FIXTURES / "garmin-fr955-hrm-plugin-chained.fit"))
    assert p.returncode == 0, pgtest.cli_result(p)
    hr = [s for s in lines(p) if s["metric"] == "heart_rate"]
    for s in hr:
        validator.validate(s)
    assert (hr[0]["value"], hr[-1]["value"]) == (69, 91)
    assert hr[0]["quality"] == ["derived"]


def test_corrupt_file_is_rejected_with_reason_and_offset(pulsegate_bin):
    path = FIXTURES / "corrupt" / "activity-bad-file-crc.fit"
    p = decode(pulsegate_bin, str(path))
    assert p.returncode == 65, pgtest.cli_result(p)
    assert p.stdout == "", "a strict reader prints nothing from a rejected file"
    err = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(err) == 1, pgtest.cli_result(p)
    assert str(path) in err[0] and "badFileCRC" in err[0] and "at byte 769" in err[0]
    assert "Traceback" not in p.stderr and "Fatal" not in p.stderr


def test_empty_and_unreadable_files(pulsegate_bin, tmp_path):
    empty = tmp_path / "empty.fit"
    empty.write_bytes(b"")
    p = decode(pulsegate_bin, str(empty))
    assert p.returncode == 65, pgtest.cli_result(p)
    assert "empty" in p.stderr and "at byte 0" in p.stderr
    p = decode(pulsegate_bin, str(tmp_path / "missing.fit"))
    assert p.returncode == 66, pgtest.cli_result(p)


def test_salvage_keeps_what_came_before_the_damage(pulsegate_bin, validator):
    path = FIXTURES / "corrupt" / "strava-android-app-truncated.fit"
    strict = decode(pulsegate_bin, str(path))
    assert strict.returncode == 65
    assert "undefinedLocalMessage at byte 7471" in strict.stderr
    p = decode(pulsegate_bin, str(path), "--salvage")
    assert p.returncode == 0, pgtest.cli_result(p)
    out = lines(p)
    assert out
    for s in out:
        validator.validate(s)
    # The record dated 2085 is part of the damage, not a sample.
    assert max(s["start"] for s in out) < "2022"
    assert "stopped at byte" in p.stderr and "2085-12-21" in p.stderr
