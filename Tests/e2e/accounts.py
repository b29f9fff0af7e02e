"""Helpers for the cloud-account end-to-end tests: daemon config for a vendor pointed at its emulator,
and the link path as a person takes it (authorize URL → the emulator's consent form → our callback).

Everything goes through public surfaces: the daemon's HTTP API and config, the emulators' vendor
endpoints and their control API.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import requests

import pgtest
from emulators import start_emulator

# Our vendor id → the emulator that plays it.
EMULATOR_OF = {"strava": "strava", "fitbit": "googlehealth", "polar": "polar", "oura": "oura"}

CLIENT_ID = "pulsegate-e2e"
CLIENT_SECRET = "e2e-client-secret-0123456789"


def emulator_urls(vendor: str, emu) -> dict:
    """The vendor.yaml endpoint names, pointed at the emulator."""
    base = emu.base_url
    if vendor == "strava":
        return {"authorize": f"{base}/oauth/authorize", "token": f"{base}/oauth/token",
                "revoke": f"{base}/oauth/deauthorize", "api": f"{base}/api/v3"}
    if vendor == "fitbit":
        return {"authorize": f"{base}/o/oauth2/v2/auth", "token": f"{base}/token", "revoke": f"{base}/revoke",
                "api": f"{base}/v4",
                "webhook_keyset": f"{base}/googlehealthapi/webhooks/webhooks_public_keyset.json"}
    if vendor == "polar":
        return {"authorize": f"{base}/oauth2/authorization", "token": f"{base}/v2/oauth2/token",
                "api": f"{base}/v3"}
    if vendor == "oura":
        return {"authorize": f"{base}/oauth/authorize", "token": f"{base}/oauth/token",
                "revoke": f"{base}/oauth/revoke", "api": base}
    raise ValueError(vendor)


def start_vendor(vendor: str, daemon_port: int, subscribed: bool = True, **options):
    """Starts the emulator of `vendor`. With `subscribed`, the vendor already delivers webhooks to the
    daemon's URL (as if the subscription had been made); otherwise the daemon makes it."""
    kwargs = dict(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, **options)
    if subscribed:
        kwargs["webhook_url"] = f"http://127.0.0.1:{daemon_port}/v1/webhooks/{vendor}"
    return start_emulator(EMULATOR_OF[vendor], **kwargs)


def vendor_config(vendor: str, emu, **extra) -> dict:
    """`vendors.<id>` for the daemon: the emulator's endpoints, our client, the webhook secrets."""
    cfg: dict = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "urls": emulator_urls(vendor, emu)}
    webhook: dict = {}
    if vendor == "strava":
        webhook["verify_token"] = "e2e-verify-token"
    if vendor == "oura":
        webhook["verification_token"] = "e2e-verification-token"
    if vendor == "polar" and getattr(emu, "webhook_secret", None):
        webhook["signature_secret_key"] = emu.webhook_secret
    if vendor == "fitbit":
        webhook["authorization"] = emu.opt("webhook_authorization")
        webhook["public_key_pem"] = emu.public_key_pem
    if webhook:
        cfg["webhook"] = webhook
    return pgtest._merge(cfg, extra)


def accounts_config(tmp_path: Path, port: int, key: pgtest.ApiKey, vendors: dict, **extra) -> dict:
    """A daemon with a file sink and the given vendors; public_url is its own loopback address."""
    return pgtest.make_config(
        tmp_path / "state", [pgtest.file_sink()], [key], port=port, public_url=f"http://127.0.0.1:{port}",
        vendors=vendors, **extra)


def links_key() -> pgtest.ApiKey:
    return pgtest.ApiKey(name="platform", scopes=("links:create",))


def authorize(daemon: pgtest.Daemon, key: pgtest.ApiKey, vendor: str, subject: str, return_to: str | None = None):
    body = {"vendor": vendor, "subject": subject}
    if return_to:
        body["return_to"] = return_to
    return requests.post(daemon.url("/v1/connections/authorize"), json=body,
                         headers={"Authorization": f"Bearer {key.key}"}, timeout=10)


def link(daemon: pgtest.Daemon, key: pgtest.ApiKey, vendor: str, subject: str, emu, user=None,
         granted_scope=None) -> requests.Response:
    """The whole consent path; returns our callback's answer (not followed further)."""
    r = authorize(daemon, key, vendor, subject)
    assert r.status_code == 201, r.text
    location = emu.consent(r.json()["authorize_url"], user=user, granted_scope=granted_scope)
    assert location.startswith(daemon.url(f"/v1/oauth/{vendor}/callback")), location
    return requests.get(location, allow_redirects=False, timeout=30)


def connections(daemon: pgtest.Daemon, key: pgtest.ApiKey, subject: str) -> list[dict]:
    r = requests.get(daemon.url("/v1/connections"), params={"subject": subject},
                     headers={"Authorization": f"Bearer {key.key}"}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["connections"]


def unlink(daemon: pgtest.Daemon, key: pgtest.ApiKey, connection_id: str) -> requests.Response:
    return requests.delete(daemon.url(f"/v1/connections/{connection_id}"),
                           headers={"Authorization": f"Bearer {key.key}"}, timeout=30)


def sink_lines(daemon: pgtest.Daemon) -> list[dict]:
    """Everything the file sink holds so far (samples and events), parsed."""
    out = []
    for path in sorted(daemon.state_dir.glob("samples*.ndjson")):
        for line in path.read_text().splitlines():
            if line.strip():
                out.append(json.loads(line))
    return out


def events(daemon: pgtest.Daemon, kind: str | None = None) -> list[dict]:
    return [e for e in sink_lines(daemon) if "event" in e and (kind is None or e["event"] == kind)]


def samples(daemon: pgtest.Daemon, vendor: str | None = None) -> list[dict]:
    return [s for s in sink_lines(daemon)
            if "event" not in s and (vendor is None or s["source"].get("vendor") == vendor)]


def store_rows(daemon: pgtest.Daemon, sql: str, args: tuple = ()) -> list[tuple]:
    """Reads the daemon's SQLite store (WAL: safe beside the running daemon)."""
    db = sqlite3.connect(f"file:{daemon.state_dir / 'pulsegate.sqlite'}?mode=ro", uri=True, timeout=10)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def metric_value(daemon: pgtest.Daemon, name: str, **labels) -> float:
    total = 0.0
    for n, l, v in daemon.metrics():
        if n == name and all(l.get(k) == str(val) for k, val in labels.items()):
            total += v
    return total


def callback_query(response: requests.Response) -> dict:
    return {k: v[0] for k, v in parse_qs(urlparse(response.headers.get("Location", "")).query).items()}


def store_bytes(daemon: pgtest.Daemon) -> bytes:
    """The raw bytes of the store (database, WAL and shared-memory files): what a disk thief reads."""
    return b"".join(p.read_bytes() for p in sorted(daemon.state_dir.glob("pulsegate.sqlite*")))


def webhooks_rejected(daemon: pgtest.Daemon, vendor: str) -> float:
    """pulsegate_webhooks_total{vendor=…, outcome=~"rejected_.*"}, summed over the rejection labels."""
    return sum(v for n, l, v in daemon.metrics()
               if n == "pulsegate_webhooks_total" and l.get("vendor") == vendor
               and l.get("outcome", "").startswith("rejected_"))
