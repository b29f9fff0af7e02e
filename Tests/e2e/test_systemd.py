"""Checks of the files in systemd/: the unit and its kiosk drop-in, sysusers, tmpfiles, udev rule, default config.

Nothing here starts the daemon or needs systemd as PID 1: `systemd-analyze verify`, `systemd-sysusers` and
`systemd-tmpfiles` run offline, the last two against a temporary --root. The tools come with Debian's
`systemd` package; without them those tests are skipped (the Python checks still run).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
SYSTEMD_DIR = REPO_ROOT / "systemd"
UNIT = SYSTEMD_DIR / "pulsegate.service"
KIOSK_DROPIN = SYSTEMD_DIR / "pulsegate-kiosk.conf"
SYSUSERS = SYSTEMD_DIR / "pulsegate.sysusers"
TMPFILES = SYSTEMD_DIR / "pulsegate.tmpfiles"
UDEV_RULES = SYSTEMD_DIR / "60-pulsegate-ant.rules"
CONFIG = SYSTEMD_DIR / "pulsegate.yaml"
README = REPO_ROOT / "README.md"

PACKAGED_BIN = "/usr/bin/pulsegate"
# Keep the tools' output plain and at the default verbosity whatever the caller's environment says.
TOOL_ENV = {**os.environ, "SYSTEMD_LOG_LEVEL": "info", "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": "cat", "LC_ALL": "C"}


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (Debian package `systemd`)")
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, env=TOOL_ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120, check=False
    )


def stand_in_binary() -> Path:
    """An existing executable for ExecStart=: the built daemon if there is one, else /bin/true.

    `systemd-analyze verify` only checks that the command exists and is executable.
    """
    env_bin = os.environ.get("PULSEGATE_BIN")
    candidates = [Path(env_bin)] if env_bin else []
    candidates += [REPO_ROOT / ".build" / "debug" / "pulsegate", Path("/bin/true")]
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c.resolve()
    pytest.fail(f"no executable among {candidates}")


def install_unit(tmp_path: Path, *, dropin: str | None = None) -> Path:
    """Copies the unit (ExecStart pointed at an existing binary), optionally with a drop-in, into tmp_path.

    `systemd-analyze verify` puts the unit's directory on the search path, so `<dir>/pulsegate.service.d/*.conf`
    is loaded as a drop-in, as it would be from /etc/systemd/system.
    """
    text, n = re.subn(
        r"^(ExecStart=[-@:+!]*)" + re.escape(PACKAGED_BIN) + r"(?=\s|$)",
        lambda m: m.group(1) + str(stand_in_binary()),
        UNIT.read_text(),
        flags=re.MULTILINE,
    )
    assert n == 1, f"expected one ExecStart={PACKAGED_BIN} line in {UNIT}, found {n}"
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    unit = unit_dir / "pulsegate.service"
    unit.write_text(text)
    if dropin is not None:
        d = unit_dir / "pulsegate.service.d"
        d.mkdir()
        (d / "kiosk.conf").write_text(dropin)
    return unit


def verify(unit: Path) -> tuple[int, list[str], str]:
    """Runs `systemd-analyze verify`; returns the exit code, the output lines about our unit, all output."""
    require_tool("systemd-analyze")
    # --recursive-errors=no: only our unit decides the exit code, not the host's units it refers to.
    p = run("systemd-analyze", "verify", "--man=no", "--recursive-errors=no", "--no-pager", str(unit))
    ours = [
        line
        for line in p.stdout.splitlines()
        if "pulsegate" in line or str(unit.parent) in line or "kiosk.conf" in line
    ]
    return p.returncode, ours, p.stdout


# --- unit and drop-in -------------------------------------------------------------------------------------


def test_unit_verifies_without_warnings(tmp_path):
    rc, ours, out = verify(install_unit(tmp_path))
    assert rc == 0, out
    assert ours == [], "systemd-analyze verify complained about pulsegate.service:\n" + "\n".join(ours)


def test_unit_with_kiosk_dropin_verifies_without_warnings(tmp_path):
    rc, ours, out = verify(install_unit(tmp_path, dropin=KIOSK_DROPIN.read_text()))
    assert rc == 0, out
    assert ours == [], "systemd-analyze verify complained about the kiosk drop-in:\n" + "\n".join(ours)


def test_verify_reports_mistakes_in_unit_and_dropin(tmp_path):
    """Canary: the two tests above would also pass if warnings were filtered away or the drop-in not read."""
    unit = install_unit(tmp_path, dropin=KIOSK_DROPIN.read_text() + "BogusDropInKey=1\n")
    unit.write_text(unit.read_text().replace("[Service]\n", "[Service]\nBogusUnitKey=1\n", 1))
    _, ours, out = verify(unit)
    assert any("BogusUnitKey" in line for line in ours), out
    assert any("BogusDropInKey" in line and "kiosk.conf" in line for line in ours), out


def unit_settings(path: Path) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_unit_matches_config_and_readme():
    unit = unit_settings(UNIT)
    config = yaml.safe_load(CONFIG.read_text())
    assert unit["Type"] == ["notify"] and unit["NotifyAccess"] == ["main"]
    assert unit["ExecStart"] == [f"{PACKAGED_BIN} serve --config /etc/pulsegate/{CONFIG.name}"]
    # systemd must not SIGKILL the daemon while it is still flushing sinks within its own shutdown timeout.
    assert int(unit["TimeoutStopSec"][0]) > config["shutdown"]["timeout_seconds"]
    assert unit["StateDirectory"] == ["pulsegate"]
    assert config["state_directory"] == "/var/lib/pulsegate"
    # The default config needs no secret, so the credential line ships commented out: a missing
    # credential file would stop the unit from starting at all.
    assert "LoadCredential" not in unit
    assert re.search(r"^#LoadCredential=sink-hmac:/etc/pulsegate/credentials/sink-hmac$", UNIT.read_text(), flags=re.MULTILINE)
    # The commented-out HTTP sink names the credential the unit loads.
    assert re.search(r"^\s*#.*hmac_secret_file:\s*sink-hmac\b", CONFIG.read_text(), flags=re.MULTILINE)
    assert unit["CapabilityBoundingSet"] == [""] and unit["AmbientCapabilities"] == [""]


# --- sysusers and tmpfiles --------------------------------------------------------------------------------


def config_lines(path: Path) -> list[list[str]]:
    """Non-comment lines split into fields; double-quoted fields (GECOS) stay one field."""
    rows = []
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            rows.append(re.findall(r'"[^"]*"|\S+', line))
    return rows


def test_sysusers_syntax():
    rows = config_lines(SYSUSERS)
    assert rows, f"{SYSUSERS} has no entries"
    for fields in rows:
        assert fields[0] in {"u", "g", "m", "r"}, fields
    users = {f[1]: f for f in rows if f[0] == "u"}
    assert set(users) == {"pulsegate"}
    _, _, uid, gecos, home, shell = users["pulsegate"]
    assert uid == "-" and gecos.startswith('"') and home == "/var/lib/pulsegate" and shell.endswith("/nologin")


def test_tmpfiles_syntax():
    entries = {}
    for fields in config_lines(TMPFILES):
        assert 2 <= len(fields) <= 7, fields
        assert fields[0] == "d", fields
        assert re.fullmatch(r"0[0-7]{3}", fields[2]), fields
        entries[fields[1]] = fields[2:5]
    assert entries == {
        "/var/lib/pulsegate": ["0750", "pulsegate", "pulsegate"],
        "/etc/pulsegate/credentials": ["0700", "root", "root"],
    }


def test_sysusers_dry_run(tmp_path):
    require_tool("systemd-sysusers")
    p = run("systemd-sysusers", "--dry-run", f"--root={tmp_path}", str(SYSUSERS))
    assert p.returncode == 0, p.stdout
    assert str(SYSUSERS) not in p.stdout, p.stdout  # any line naming the file is a parse warning
    assert "Creating user 'pulsegate'" in p.stdout, p.stdout


def test_sysusers_then_tmpfiles_in_temporary_root(tmp_path):
    """Creates the user in an empty root, then applies the tmpfiles entries there and checks the result.

    systemd 252's systemd-tmpfiles has no --dry-run; --create against a temporary --root is the equivalent.
    Owners only resolve and apply as root (in the root's own /etc/passwd).
    """
    require_tool("systemd-sysusers")
    require_tool("systemd-tmpfiles")
    if "--dry-run" in run("systemd-tmpfiles", "--help").stdout:
        p = run("systemd-tmpfiles", "--dry-run", "--create", f"--root={tmp_path}", str(TMPFILES))
        assert p.returncode == 0 and str(TMPFILES) not in p.stdout, p.stdout
    if os.geteuid() != 0:
        pytest.skip("applying sysusers/tmpfiles to a temporary root needs root (chown)")
    (tmp_path / "etc").mkdir()
    p = run("systemd-sysusers", f"--root={tmp_path}", str(SYSUSERS))
    assert p.returncode == 0, p.stdout
    passwd = {line.split(":")[0]: line.split(":") for line in (tmp_path / "etc/passwd").read_text().splitlines()}
    uid, gid = int(passwd["pulsegate"][2]), int(passwd["pulsegate"][3])
    assert passwd["pulsegate"][5:7] == ["/var/lib/pulsegate", "/usr/sbin/nologin"]

    p = run("systemd-tmpfiles", "--create", f"--root={tmp_path}", str(TMPFILES))
    assert p.returncode == 0 and str(TMPFILES) not in p.stdout, p.stdout
    state = (tmp_path / "var/lib/pulsegate").stat()
    assert stat.S_ISDIR(state.st_mode) and stat.S_IMODE(state.st_mode) == 0o750
    assert (state.st_uid, state.st_gid) == (uid, gid)
    creds = (tmp_path / "etc/pulsegate/credentials").stat()
    assert stat.S_ISDIR(creds.st_mode) and stat.S_IMODE(creds.st_mode) == 0o700
    assert (creds.st_uid, creds.st_gid) == (0, 0)


def test_udev_rule_covers_both_ant_sticks():
    rules = [line for line in UDEV_RULES.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert len(rules) == 1
    rule = rules[0]
    assert 'ATTR{idVendor}=="0fcf"' in rule and 'ATTR{idProduct}=="1008|1009"' in rule
    assert 'GROUP="plugdev"' in rule and 'MODE="0660"' in rule


# --- default config ---------------------------------------------------------------------------------------


def readme_config_example() -> dict:
    """The YAML blocks of the README's Configuration section (the daemon's keys, then the cloud
    accounts' keys), merged: the list of every key."""
    section = README.read_text().split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```yaml\n(.*?)```", section, flags=re.DOTALL)
    assert blocks, "no ```yaml block in the README's Configuration section"
    merged: dict = {}
    for block in blocks:
        merged.update(yaml.safe_load(block))
    return merged


def test_default_config_has_the_readme_keys():
    example = readme_config_example()
    config = yaml.safe_load(CONFIG.read_text())
    assert isinstance(config, dict)
    # Every packaged key is documented; the optional cloud-account sections may stay commented out.
    assert set(config) <= set(example), f"undocumented keys: {set(config) - set(example)}"
    assert set(example) - set(config) <= {"public_url", "accounts", "vendors", "api_keys", "sensors", "kiosk"}, \
        set(example) - set(config)
    for section in ("server", "store", "outbox", "shutdown", "log"):
        assert set(config[section]) == set(example[section]), section
    assert set(config["store"]["sqlite"]) == set(example["store"]["sqlite"])
    assert config["log"]["format"] == "json"
    assert config["api_keys"] == []

    assert [s["id"] for s in config["sinks"]] == ["archive"]
    file_example = next(s for s in example["sinks"] if s["type"] == "file")
    assert set(config["sinks"][0]) == set(file_example) and config["sinks"][0]["type"] == "file"


def test_default_config_commented_examples_are_complete():
    """Uncommenting the HTTP sink / API key examples gives entries with every key the README shows."""
    example = readme_config_example()
    text = CONFIG.read_text()
    sinks_block = re.search(r"^sinks:.*?(?=^\S)", text, flags=re.DOTALL | re.MULTILINE).group(0)
    # Commented-out YAML is "  # - key: ..." / "  #   key: ..."; prose comments stay comments.
    uncommented = re.sub(r"^  # (?=- |  )", "  ", sinks_block, flags=re.MULTILINE)
    sinks = {s["id"]: s for s in yaml.safe_load(uncommented)["sinks"]}
    for readme_sink in example["sinks"]:
        assert readme_sink["type"] in {s["type"] for s in sinks.values()}
        ours = next(s for s in sinks.values() if s["type"] == readme_sink["type"])
        assert set(ours) == set(readme_sink), readme_sink["type"]

    keys_block = text[text.index("# api_keys:") :].split("\n\n", 1)[0]
    keys = yaml.safe_load(re.sub(r"^# ?", "", keys_block, flags=re.MULTILINE))["api_keys"]
    assert len(keys) == 1 and set(keys[0]) == set(example["api_keys"][0])
    assert set(keys[0]["rate_limit"]) == set(example["api_keys"][0]["rate_limit"])
