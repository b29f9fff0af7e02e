#!/usr/bin/env bash
# Installs what the build and the tests need and is missing: Debian packages (with apt-get when root,
# otherwise it prints the exact command and fails) and the Python packages of the end-to-end tests
# (into a virtual environment under .build/, never into the system Python).
#
# Usage: scripts/deps.sh [build|test|bench]   (each level includes the ones before it)
set -euo pipefail
cd "$(dirname "$0")/.."

level=${1:-test}
packages=(libsystemd-dev libsqlite3-dev libusb-1.0-0-dev libbluetooth-dev pkg-config)
if [ "$level" = test ] || [ "$level" = bench ]; then
  # dbus-daemon, python3-dbus, python3-gi: the private bus and the mock org.bluez of the BlueZ backend tests
  packages+=(systemd python3 python3-venv dbus-daemon python3-dbus python3-gi)
fi
if [ "$level" = bench ]; then
  packages+=(wrk)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "deps: missing Debian packages; run:" >&2
    echo "  sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

if ! command -v swift >/dev/null; then
  echo "deps: the Swift toolchain is not on PATH (Swift 6.1 or later is needed)" >&2
  exit 1
fi

if [ "$level" = test ] || [ "$level" = bench ]; then
  venv=.build/e2e-venv
  if [ ! -x "$venv/bin/python" ]; then
    mkdir -p .build
    python3 -m venv --system-site-packages "$venv"
  fi
  stamp="$venv/.requirements.sha256"
  want=$(sha256sum Tests/e2e/requirements.txt | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r Tests/e2e/requirements.txt
    echo "$want" > "$stamp"
  fi
fi
