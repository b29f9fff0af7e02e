"""Fixtures for the pulsegate end-to-end suite. Helpers live in pgtest.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pgtest  # noqa: E402


@pytest.fixture(scope="session")
def pulsegate_bin() -> Path:
    """The daemon under test: $PULSEGATE_BIN, else .build/debug/pulsegate. Missing is a failure, not a skip."""
    path = pgtest.binary_path()
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(
            f"pulsegate binary not found or not executable at {path}. Build it first "
            f"(`swift build` in {pgtest.REPO_ROOT}) or point PULSEGATE_BIN at it.",
            pytrace=False,
        )
    return path


@pytest.fixture
def receiver():
    """An HTTP sink receiver that verifies every batch's HMAC; a bad one fails the test."""
    r = pgtest.SinkReceiver()
    yield r
    r.close()
    r.assert_ok()


@pytest.fixture
def daemon_factory(pulsegate_bin, tmp_path):
    """make(config, name=..., env=..., preexec_fn=...) -> Daemon (not started). All are killed at teardown."""
    made: list[pgtest.Daemon] = []

    def make(config: dict, name: str = "pulsegate", **kw) -> pgtest.Daemon:
        d = pgtest.Daemon(pulsegate_bin, tmp_path, config, name=name, **kw)
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, attach the stderr tail of every daemon that is alive or was used by the test."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for d in pgtest.live_daemons():
            report.sections.append((f"pulsegate stderr: {d.name} (full log: {d.log_path})", d.tail(80)))
