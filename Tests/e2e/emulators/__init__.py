"""HTTP emulators of the fitness clouds pulsegate links to: Strava, Google Health API, Polar
AccessLink and Oura. See README.md beside this file.

    from emulators import start_emulator
    emu = start_emulator("strava", webhook_url="http://127.0.0.1:8080/v1/webhooks/strava")
    ...
    emu.stop()
"""

from __future__ import annotations

from .base import Emulator
from .garmin import GarminEmulator
from .googlehealth import GoogleHealthEmulator
from .oura import OuraEmulator
from .polar import PolarEmulator
from .strava import StravaEmulator
from .suunto import SuuntoEmulator
from .wahoo import WahooEmulator
from .whoop import WhoopEmulator
from .withings import WithingsEmulator

EMULATORS: dict[str, type[Emulator]] = {
    "strava": StravaEmulator,
    "googlehealth": GoogleHealthEmulator,
    "polar": PolarEmulator,
    "oura": OuraEmulator,
    "garmin": GarminEmulator,
    "suunto": SuuntoEmulator,
    "wahoo": WahooEmulator,
    "whoop": WhoopEmulator,
    "withings": WithingsEmulator,
}


def start_emulator(vendor: str, **kwargs) -> Emulator:
    """Starts the named emulator on 127.0.0.1 (port 0 = any free port) in a background thread.

    kwargs: webhook_url, client_id, client_secret, seed, host, port, and any option of the vendor
    (see emulator.config / the README)."""
    try:
        cls = EMULATORS[vendor]
    except KeyError:
        raise ValueError(f"unknown vendor {vendor!r}; one of {', '.join(EMULATORS)}") from None
    return cls(**kwargs).start()


__all__ = ["EMULATORS", "Emulator", "GarminEmulator", "GoogleHealthEmulator", "OuraEmulator", "PolarEmulator", "StravaEmulator",
           "SuuntoEmulator", "WahooEmulator", "WhoopEmulator", "WithingsEmulator", "start_emulator"]
