"""The kiosk's whole path on a real bus: a private dbus-daemon, the test-only bluetoothd of
mockbluez/ (BlueZ's documented D-Bus API, two sensors), the daemon's BlueZ backend and sensor manager,
the outbox and the file sink. A member is bound to the bike, the strap streams, drops mid-ride and
comes back: the samples carry the member, the gap stays a gap, and the reconnect happens on its own."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path

import pgtest
import pytest

MOCK = Path(__file__).resolve().parent / "mockbluez" / "mockbluez.py"
STRAP = "AA:BB:CC:DD:EE:01"
POWER = "AA:BB:CC:DD:EE:02"


class Bluez:
    """A private bus with mockbluez on it, driven line by line."""

    def __init__(self, tmp: Path):
        socket = tmp / "bus.sock"
        config = tmp / "bus.conf"
        config.write_text(f"""<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
""")
        self.bus = subprocess.Popen(["dbus-daemon", "--config-file", str(config), "--nofork", "--print-address"],
                                    stdout=subprocess.PIPE, text=True)
        self.address = self.bus.stdout.readline().strip()
        assert self.address.startswith("unix:"), self.address
        self.mock = subprocess.Popen(["/usr/bin/python3", str(MOCK), "--address", self.address],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.wait_for("ready", timeout=20)

    def _read(self) -> None:
        for line in self.mock.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, prefix: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                break
            self.log.append(line)
            if line.startswith(prefix):
                return line
        raise AssertionError(f"mockbluez never said {prefix!r}; last lines: {self.log[-15:]}")

    def command(self, text: str) -> str:
        self.mock.stdin.write(text + "\n")
        self.mock.stdin.flush()
        return self.wait_for("ok", timeout=10)

    def close(self) -> None:
        for p in (self.mock, self.bus):
            if p.poll() is None:
                p.kill()
                p.wait(timeout=5)


@pytest.fixture
def bluez(tmp_path):
    b = Bluez(tmp_path)
    yield b
    b.close()


def strap_samples(daemon) -> list[dict]:
    samples, _, _, corrupt = pgtest.read_file_sink(daemon.state_dir)
    assert not corrupt, corrupt
    rows = [r for r in samples.values() if r.get("metric") == "heart_rate"
            and r.get("source", {}).get("device", {}).get("address") == STRAP]
    return sorted(rows, key=lambda r: r["start"])


def seconds(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_a_bound_strap_streams_drops_and_returns_through_the_daemon(daemon_factory, tmp_path, bluez):
    staff = pgtest.ApiKey("staff", scopes=("kiosk:bind",))
    d = daemon_factory(pgtest.make_config(
        tmp_path / "state", [pgtest.file_sink()], [staff],
        sensors={"backends": ["bluez"], "bluez_bus": bluez.address, "lost_after_seconds": 30},
        kiosk={"stations": [{"id": "bike-1", "name": "Bike 1", "sensors": [f"ble:{STRAP}", f"ble:{POWER}"]}]}))
    d.start()
    r = pgtest.http_session().post(d.url("/v1/kiosk/bindings"), json={"station": "bike-1", "subject": "member-7"},
                                   headers={"Authorization": f"Bearer {staff.key}"}, timeout=10)
    assert r.status_code == 201, r.text

    # The backend finds the strap, connects and enables notifications on its own.
    bluez.wait_for("call StartNotify", timeout=30)
    time.sleep(0.5)
    for bpm in (120, 121, 122):
        bluez.command(f"notify {STRAP} 2a37 00{bpm:02x}")
        time.sleep(0.25)
    pgtest.wait_until(lambda: len(strap_samples(d)) >= 3, timeout=20, message=lambda: d.tail(30))
    first = strap_samples(d)
    assert [s["value"] for s in first] == [120, 121, 122]
    assert all(s["subject"] == "member-7" and s["source"]["station"] == "bike-1" for s in first)
    stations = pgtest.http_session().get(d.url("/v1/kiosk/stations"),
                                         headers={"Authorization": f"Bearer {staff.key}"}, timeout=10).json()
    strap = next(s for s in stations["stations"][0]["sensors"] if s["id"] == f"ble:{STRAP}")
    assert strap["state"] == "streaming" and strap["battery"] == 85, strap

    # The strap drops mid-ride: nothing is invented while it is away …
    bluez.command(f"drop {STRAP}")
    time.sleep(3)
    assert len(strap_samples(d)) == 3, "no samples while the strap is away"
    # … and it comes back by itself (the backend reconnects and re-enables notifications).
    bluez.wait_for("call Connect", timeout=30)
    bluez.wait_for("call StartNotify", timeout=30)
    time.sleep(0.5)
    bluez.command(f"notify {STRAP} 2a37 0080")
    pgtest.wait_until(lambda: len(strap_samples(d)) >= 4, timeout=20, message=lambda: d.tail(30))
    back = strap_samples(d)[3]
    assert back["value"] == 128 and back["subject"] == "member-7", "the station kept its binding"
    # The gap is visible: the first sample after the return is as late as the strap was away.
    assert seconds(back["start"]) - seconds(first[-1]["start"]) >= 3, (first[-1], back)
    stations = pgtest.http_session().get(d.url("/v1/kiosk/stations"),
                                         headers={"Authorization": f"Bearer {staff.key}"}, timeout=10).json()
    strap = next(s for s in stations["stations"][0]["sensors"] if s["id"] == f"ble:{STRAP}")
    assert strap["losses"] >= 1 and strap["state"] == "streaming", strap
    # Garbage from the strap is counted, never fatal.
    bluez.command(f"notify {STRAP} 2a37 01")
    pgtest.wait_until(lambda: next(
        s for s in pgtest.http_session().get(d.url("/v1/kiosk/stations"), headers={
            "Authorization": f"Bearer {staff.key}"}, timeout=10).json()["stations"][0]["sensors"]
        if s["id"] == f"ble:{STRAP}")["rejected"] >= 1, timeout=10)
    assert "sensor payload refused" in d.stderr_text(), "a refusal is logged"
    assert pgtest.metric_series(d.metrics(), lambda n: n == "pulsegate_sensor_payloads_rejected_total")
    assert d.alive()
