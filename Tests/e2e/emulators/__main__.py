"""Runs one emulator in the foreground:

    cd Tests/e2e
    python -m emulators strava --port 8701 --webhook-url http://127.0.0.1:8080/v1/webhooks/strava
    python -m emulators googlehealth --set access_ttl_s=60 --set silent=true

Prints the URLs for the daemon's config; stops on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from . import EMULATORS, start_emulator


def _option(text: str) -> tuple[str, object]:
    """key=value, the value read as JSON when it parses (numbers, true/false, null, lists), else text."""
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--set wants key=value, got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m emulators", description="Run a fitness-cloud vendor emulator.")
    p.add_argument("vendor", choices=sorted(EMULATORS))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--webhook-url", help="a subscription to this URL exists from the start")
    p.add_argument("--client-id", default="emulator-client")
    p.add_argument("--client-secret", default="emulator-secret")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", dest="options", type=_option, action="append", default=[], metavar="KEY=VALUE",
                   help="an emulator option (see GET /_emulator/state -> config); repeatable")
    args = p.parse_args(argv)
    try:
        emu = start_emulator(args.vendor, host=args.host, port=args.port, webhook_url=args.webhook_url,
                             client_id=args.client_id, client_secret=args.client_secret, seed=args.seed,
                             **dict(args.options))
    except (ValueError, OSError) as e:
        print(f"emulators: {e}", file=sys.stderr)
        return 2
    print(f"{emu.display_name} emulator listening on {emu.base_url}")
    for name, url in emu.urls().items():
        print(f"  {name:15} {url}")
    print(f"  {'control':15} {emu.url('/_emulator/state')}")
    print(f"  client_id={emu.client_id} client_secret={emu.client_secret} default user={emu.default_user_id}")
    sys.stdout.flush()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
