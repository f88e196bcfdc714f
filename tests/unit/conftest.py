"""Unit-test fixtures: an isolated home, and a logged-in Vouch test double on PATH."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from examples.demo.issuer import Issuer

BIN = Path(__file__).resolve().parents[1] / "fixtures" / "bin"
#: Variables from the developer's shell that change what setup writes or doctor reports.
CARGO_SETUP_ENV = (
    "CARGO_HTTP_PROXY",
    "CARGO_HTTP_CAINFO",
    "NO_PROXY",
    "no_proxy",
    "GIT_SSL_CAINFO",
    "CARGO_REGISTRY_TOKEN",
    "CARGO_REGISTRIES_CORP_TOKEN",
    "CARGO_REGISTRIES_CORP_INDEX",
    "CARGO_NET_GIT_FETCH_WITH_CLI",
    "GIT_CONFIG_COUNT",
)
VOUCH_BIN = Path(__file__).resolve().parents[2] / "examples" / "demo" / "bin"  # the Vouch CLI stand-in


@pytest.fixture
def isolated_home(tmp_path, monkeypatch):
    """HOME, XDG dirs, CARGO_HOME and CARGO_VOUCH_HOME inside tmp_path; the vouch double on PATH."""
    home = tmp_path / "home"
    home.mkdir()
    for name, value in {
        "HOME": home,
        "XDG_CONFIG_HOME": home / ".config",
        "XDG_DATA_HOME": home / ".local" / "share",
        "CARGO_HOME": home / ".cargo",
        "CARGO_VOUCH_HOME": home / "vouch-home",
        "VOUCH_DOUBLE_LOG": tmp_path / "vouch-calls.jsonl",
    }.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.setenv("PATH", os.pathsep.join([str(VOUCH_BIN), str(BIN), os.environ["PATH"]]))
    monkeypatch.delenv("CARGO_VOUCH_CONFIG", raising=False)
    return home


@pytest.fixture
def issuer():
    with Issuer() as running:
        yield running


@pytest.fixture
def vouch_session(isolated_home, issuer, monkeypatch):
    """`vouch login` with the test double; returns the session token."""
    monkeypatch.setenv("VOUCH_TEST_ISSUER", issuer.url)
    subprocess.run(["vouch", "login", "--sub", "alice@example.com"], check=True, capture_output=True)
    return subprocess.run(["vouch", "credential", "token"], check=True, capture_output=True, text=True).stdout.strip()
