"""Every sample a sink writes validates against Sources/PulseGateCore/Resources/sample-v1.schema.json
(JSON Schema 2020-12), for every metric of the registry, instant and interval, every sleep stage,
every source kind, and input in converted units."""

from __future__ import annotations

import json
import math

import pytest
from jsonschema import Draft202012Validator

import pgtest

# (metric, canonical unit, interval?, [(input value, input unit, expected canonical value), ...])
REGISTRY = [
    ("heart_rate", "/min", False, [(72, "/min", 72), (80, "{beats}/min", 80), (2, "/s", 120)]),
    ("rr_interval", "ms", False, [(850, "ms", 850), (0.9, "s", 900)]),
    ("power", "W", False, [(250, "W", 250), (0.3, "kW", 300)]),
    ("cadence", "/min", False, [(90, "/min", 90), (85, "{rev}/min", 85)]),
    ("speed", "m/s", False, [(5.5, "m/s", 5.5), (36, "km/h", 10), (10, "[mi_i]/h", 4.4704)]),
    ("distance", "m", True, [(1000, "m", 1000), (1.5, "km", 1500), (1, "[mi_i]", 1609.344), (300, "[ft_i]", 91.44)]),
    ("altitude", "m", False, [(120, "m", 120), (-20, "m", -20)]),
    ("latitude", "deg", False, [(52.52, "deg", 52.52)]),
    ("longitude", "deg", False, [(-13.405, "deg", -13.405)]),
    ("step_count", "{steps}", True, [(1200, "{steps}", 1200)]),
    ("active_energy", "kcal", True, [(35.5, "kcal", 35.5), (418.4, "kJ", 100)]),
    ("hrv_rmssd", "ms", False, [(45, "ms", 45)]),
    ("hrv_sdnn", "ms", False, [(60, "ms", 60)]),
    ("resting_heart_rate", "/min", False, [(52, "/min", 52)]),
    ("spo2", "%", False, [(97, "%", 97), (0.96, "1", 96)]),
    ("respiratory_rate", "/min", False, [(14, "/min", 14), (15, "{breaths}/min", 15)]),
    ("body_weight", "kg", False, [(72.5, "kg", 72.5), (72500, "g", 72.5), (160, "[lb_av]", 72.5747792)]),
    ("body_fat", "%", False, [(18.2, "%", 18.2)]),
    ("body_temperature", "Cel", False, [(36.8, "Cel", 36.8), (98.6, "[degF]", 37), (310, "K", 36.85)]),
    ("skin_temperature", "Cel", False, [(33.1, "Cel", 33.1)]),
    ("ambient_temperature", "Cel", False, [(-5.5, "Cel", -5.5)]),
    ("blood_pressure_systolic", "mm[Hg]", False, [(120, "mm[Hg]", 120), (16, "kPa", 120.009852)]),
    ("blood_pressure_diastolic", "mm[Hg]", False, [(80, "mm[Hg]", 80)]),
    ("vo2max", "mL/min/kg", False, [(48, "mL/min/kg", 48), (50, "mL/kg/min", 50)]),
]
SLEEP_STAGES = ["awake", "light", "deep", "rem", "asleep", "in_bed"]
SOURCES = [
    {"kind": "ble", "device": {"manufacturer": "Polar", "model": "H10", "address": "A0:9E:1A:00:00:01",
                               "firmware": "3.1.1"}},
    {"kind": "ant", "station": "kiosk-7", "device": {"address": "54321", "serial": "SN-9"}},
    {"kind": "cloud", "vendor": "strava", "record_id": "activity-991"},
    {"kind": "file", "record_id": "ride.fit#3"},
    {"kind": "app", "app": "health_connect"},
]
QUALITY = [None, ["contact_lost"], ["interpolated", "vendor_computed"], ["derived"], ["failover"]]


@pytest.fixture(scope="module")
def schema():
    assert pgtest.SCHEMA_PATH.is_file(), f"missing {pgtest.SCHEMA_PATH}"
    s = json.loads(pgtest.SCHEMA_PATH.read_text())
    Draft202012Validator.check_schema(s)
    return s


@pytest.fixture(scope="module")
def validator(schema):
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _inputs():
    """(input sample, expected canonical value, canonical unit) for the whole registry."""
    out = []
    n = 0
    ms = pgtest.alloc_ms(2_000_000)
    for metric, unit, interval, values in REGISTRY:
        for value, in_unit, expected in values:
            start = ms + n * 1000
            s = {"subject": f"schema-{n % 3}", "metric": metric, "value": value, "unit": in_unit,
                 "start": pgtest.iso(start), "source": SOURCES[n % len(SOURCES)]}
            if interval:
                s["end"] = pgtest.iso(start + 60_000)
            q = QUALITY[n % len(QUALITY)]
            if q:
                s["quality"] = q
            out.append((s, expected, unit))
            n += 1
    for stage in SLEEP_STAGES:
        start = ms + n * 1000
        s = {"subject": "schema-sleep", "metric": "sleep_stage", "value": stage, "unit": "{stage}",
             "start": pgtest.iso(start), "end": pgtest.iso(start + 900_000),
             "source": {"kind": "cloud", "vendor": "oura", "record_id": f"sleep-{n}"}}
        out.append((s, stage, "{stage}"))
        n += 1
    return out


def test_schema_is_not_vacuous(validator):
    """The schema must actually constrain samples (an empty schema accepts anything)."""
    good = {"v": 1, "id": "0d8f8a1e-6c2b-8c39-9a51-3f3a5b0c2e11", "subject": "user-42", "metric": "heart_rate",
            "value": 142, "unit": "/min", "start": "2026-11-23T10:00:00.000Z",
            "source": {"kind": "ble", "device": {"manufacturer": "Polar", "model": "H10",
                                                  "address": "A0:9E:1A:00:00:01"}},
            "quality": ["contact_lost"]}
    assert not list(validator.iter_errors(good)), [e.message for e in validator.iter_errors(good)]
    bad = {
        "empty object": {},
        "v 2": {**good, "v": 2},
        "no id": {k: v for k, v in good.items() if k != "id"},
        "unknown metric": {**good, "metric": "hartrate"},
        "no source": {k: v for k, v in good.items() if k != "source"},
        "unknown source kind": {**good, "source": {"kind": "pigeon"}},
        "unknown quality flag": {**good, "quality": ["great"]},
        "value is an object": {**good, "value": {"x": 1}},
        "empty subject": {**good, "subject": ""},
    }
    accepted = [name for name, doc in bad.items() if validator.is_valid(doc)]
    assert not accepted, f"the schema accepts invalid samples: {accepted}"


def test_every_written_sample_validates(pulsegate_bin, tmp_path, daemon_factory, receiver, validator):
    key = pgtest.ApiKey("schema")
    cfg = pgtest.make_config(tmp_path / "state",
                             sinks=[pgtest.file_sink("archive"), pgtest.http_sink(receiver, "pipeline")],
                             api_keys=[key])
    d = daemon_factory(cfg, name="schema")
    d.start()
    inputs = _inputs()
    half = len(inputs) // 2
    ids = d.accept([s for s, _, _ in inputs[:half]], key, fmt="ndjson")
    ids += d.accept([s for s, _, _ in inputs[half:]], key, fmt="json")
    assert len(set(ids)) == len(inputs)
    pgtest.wait_file_sink(d.state_dir, ids, 30, d)
    receiver.wait_for(ids, 30, d)
    samples, raw, count, corrupt = pgtest.read_file_sink(d.state_dir)
    assert not corrupt, corrupt[:5]
    assert set(samples) == set(ids) and count >= len(ids)

    problems = []
    for (sent, expected, unit), sid in zip(inputs, ids):
        got = samples[sid]
        for err in validator.iter_errors(got):
            problems.append(f"{sent['metric']} ({sent['unit']}): {err.message} at {list(err.absolute_path)}")
        if got["unit"] != unit:
            problems.append(f"{sent['metric']}: unit {got['unit']!r}, expected canonical {unit!r}")
        if isinstance(expected, str):
            ok = got["value"] == expected
        else:
            ok = pgtest.is_finite_number(got["value"]) and math.isclose(got["value"], expected, rel_tol=1e-6,
                                                                         abs_tol=1e-9)
        if not ok:
            problems.append(f"{sent['metric']}: {sent['value']} {sent['unit']} became {got['value']}, "
                            f"expected {expected} {unit}")
        interval = "end" in sent
        if interval != ("end" in got) or (interval and got["end"] != sent["end"]):
            problems.append(f"{sent['metric']}: end {got.get('end')!r}, sent {sent.get('end')!r}")
        if got["start"] != sent["start"] or got["subject"] != sent["subject"] or got["source"] != sent["source"]:
            problems.append(f"{sent['metric']}: identity fields changed: sent {sent}, got {got}")
        if sorted(got.get("quality", [])) != sorted(sent.get("quality", [])):
            problems.append(f"{sent['metric']}: quality {got.get('quality')} sent {sent.get('quality')}")
        if got["v"] != 1 or got["id"] != sid:
            problems.append(f"{sent['metric']}: v/id {got['v']} {got['id']} (answer said {sid})")
        # the HTTP sink gets the very same line
        if receiver.raw.get(sid) != raw[sid]:
            problems.append(f"{sent['metric']}: HTTP sink line {receiver.raw.get(sid)!r} != file line {raw[sid]!r}")
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:40])
    assert d.stop() == 0


def test_version_lists_every_metric(pulsegate_bin, tmp_path):
    p = pgtest.run_cli(pulsegate_bin, "version", "--metrics", cwd=tmp_path)
    assert p.returncode == 0, pgtest.cli_result(p)
    missing = [m for m, *_ in REGISTRY if m not in p.stdout] + ([] if "sleep_stage" in p.stdout else ["sleep_stage"])
    assert not missing, f"`version --metrics` does not list {missing}:\n{p.stdout[:2000]}"
