"""Kiosk stations and bindings through the HTTP API (`/v1/kiosk/...`), on a daemon whose sensor
backends cannot reach any radio: no bluetoothd on the bus it is given, no ANT+ stick on this machine.
The daemon says so in its log, keeps serving, and bindings work all the same."""

from __future__ import annotations

import json
import time
from datetime import datetime

import pgtest
import pytest

STRAP = "ble:C0:FF:EE:00:00:01"
TRAINER = "ble:C0:FF:EE:00:00:02"


def kiosk_config(tmp_path, keys, **extra):
    return pgtest.make_config(
        tmp_path / "state", [pgtest.file_sink()], keys,
        sensors={"backends": ["bluez"], "bluez_bus": f"unix:path={tmp_path}/no-such-bus"},
        kiosk={"stations": [
            {"id": "bike-1", "name": "Bike 1", "sensors": [STRAP, TRAINER],
             "priority": {"heart_rate": [STRAP, TRAINER]}},
            {"id": "bike-2", "sensors": ["ant:4711/120"]},
        ], "max_binding_hours": 2},
        **extra)


@pytest.fixture
def kiosk(daemon_factory, tmp_path):
    staff = pgtest.ApiKey("staff", scopes=("kiosk:bind",))
    writer = pgtest.ApiKey("writer", scopes=("samples:write",))
    d = daemon_factory(kiosk_config(tmp_path, [staff, writer]))
    d.start()
    return d, staff, writer


def call(d, method, path, key, body=None):
    headers = {"Authorization": f"Bearer {key.key}"} if key else {}
    if body is not None:
        headers["Content-Type"] = "application/json"
    return pgtest.http_session().request(method, d.url(path), headers=headers,
                                         data=json.dumps(body) if body is not None else None, timeout=10)


def test_bind_show_and_unbind_a_station(kiosk):
    d, staff, _ = kiosk
    r = call(d, "POST", "/v1/kiosk/bindings", staff,
             {"station": "bike-1", "subject": "member-7", "display_name": "Ada", "expires_in_seconds": 1800})
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["station"] == "bike-1" and made["subject"] == "member-7" and made["display_name"] == "Ada"
    expires = datetime.fromisoformat(made["expires_at"].replace("Z", "+00:00")).timestamp()
    assert 1700 < expires - time.time() < 1900

    r = call(d, "GET", "/v1/kiosk/stations", staff)
    assert r.status_code == 200, r.text
    stations = {s["id"]: s for s in r.json()["stations"]}
    assert set(stations) == {"bike-1", "bike-2"}
    assert stations["bike-1"]["binding"]["subject"] == "member-7"
    assert stations["bike-2"].get("binding") is None
    assert stations["bike-2"]["name"] == "bike-2", "a station without a name is shown by its id"
    sensors = {s["id"]: s for s in stations["bike-1"]["sensors"]}
    assert sensors[STRAP]["state"] == "unseen", "nothing is invented about sensors never heard"

    # A second binding replaces the first.
    r = call(d, "POST", "/v1/kiosk/bindings", staff, {"station": "bike-1", "subject": "member-8"})
    assert r.status_code == 201, r.text
    stations = {s["id"]: s for s in call(d, "GET", "/v1/kiosk/stations", staff).json()["stations"]}
    assert stations["bike-1"]["binding"]["subject"] == "member-8"

    assert call(d, "DELETE", "/v1/kiosk/bindings/bike-1", staff).status_code == 204
    pgtest.assert_error_body(call(d, "DELETE", "/v1/kiosk/bindings/bike-1", staff), 404)
    stations = {s["id"]: s for s in call(d, "GET", "/v1/kiosk/stations", staff).json()["stations"]}
    assert stations["bike-1"].get("binding") is None


def test_bindings_are_refused_clearly(kiosk):
    d, staff, writer = kiosk
    body = {"station": "bike-1", "subject": "member-7"}
    pgtest.assert_error_body(call(d, "POST", "/v1/kiosk/bindings", None, body), 401)
    err = pgtest.assert_error_body(call(d, "POST", "/v1/kiosk/bindings", writer, body), 403)
    assert "kiosk:bind" in err["message"]
    err = pgtest.assert_error_body(
        call(d, "POST", "/v1/kiosk/bindings", staff, {"station": "bike-9", "subject": "m"}), 404)
    assert err["code"] == "unknown_station"
    err = pgtest.assert_error_body(
        call(d, "POST", "/v1/kiosk/bindings", staff, {**body, "expires_in_seconds": 3 * 3600}), 400)
    assert err["code"] == "invalid_expiry" and "7200" in err["message"], "kiosk.max_binding_hours is 2"
    for bad in ({"station": "bike-1"}, {"station": "bike-1", "subject": ""}, "not json"):
        r = pgtest.http_session().post(d.url("/v1/kiosk/bindings"), headers={
            "Authorization": f"Bearer {staff.key}", "Content-Type": "application/json"},
            data=bad if isinstance(bad, str) else json.dumps(bad), timeout=10)
        assert r.status_code == 400, r.text
    pgtest.assert_error_body(call(d, "DELETE", "/v1/kiosk/bindings/bike-9", staff), 404)


def test_a_kiosk_without_a_radio_keeps_serving(kiosk):
    d, staff, writer = kiosk
    # The BlueZ backend cannot reach bluetoothd on the given bus: said once, clearly; the daemon serves.
    pgtest.wait_until(lambda: "sensor backend not running" in d.stderr_text(), timeout=20,
                      message=lambda: d.tail(30))
    line = next(json.loads(l) for l in d.stderr_text().splitlines()
                if "sensor backend not running" in l)
    assert line.get("backend") == "bluez" or "bluez" in json.dumps(line), line
    assert d.get("/healthz").status_code == 200
    assert d.accept(pgtest.heart_rates(3), writer), "cloud and app intake are unaffected"
    assert d.alive()


def test_station_configuration_errors_name_the_key(tmp_path, pulsegate_bin):
    def check(kiosk_cfg, sensors=None):
        cfg = pgtest.make_config(tmp_path / "s", [pgtest.file_sink()], [], kiosk=kiosk_cfg,
                                 **({"sensors": sensors} if sensors else {}))
        path = tmp_path / "bad.yaml"
        import yaml
        path.write_text(yaml.safe_dump(cfg))
        return pgtest.run_cli(pulsegate_bin, "config", "check", "--config", str(path))

    p = check({"stations": [{"id": "bike-1", "sensors": ["ble:C0:FF:EE"]}]})
    assert p.returncode == 78 and "kiosk.stations[0].sensors[0]" in p.stderr, pgtest.cli_result(p)
    p = check({"stations": [{"id": "bike-1", "sensors": [STRAP], "priority": {"hart_rate": [STRAP]}}]})
    assert p.returncode == 78 and "kiosk.stations[0].priority.hart_rate" in p.stderr, pgtest.cli_result(p)
    p = check({"stations": [{"id": "b", "sensors": [STRAP]}, {"id": "b", "sensors": [STRAP]}]})
    assert p.returncode == 78 and "kiosk.stations[1].id" in p.stderr, pgtest.cli_result(p)
    p = check({"stations": [{"id": "b", "sensors": ["ant:1/120"]}]}, sensors={"backends": ["ant"]})
    assert p.returncode == 78 and "sensors.ant_network_key" in p.stderr, pgtest.cli_result(p)
    assert "licensed" in p.stderr
