"""The touch against a software CTAP2 authenticator (tests/fixtures/soft_fido.py)."""

from __future__ import annotations

import json

import pytest

from cargo_vouch.protocol import Publish
from cargo_vouch.touch import device, enrollment
from cargo_vouch.touch.challenge import WriteIntent
from cargo_vouch.touch.enrollment import CounterStore
from tests.fixtures.soft_fido import SoftAuthenticator

PUBLISH = WriteIntent("corp", Publish("hello", "0.1.0", "a" * 64))


@pytest.fixture
def config_dir(tmp_path, monkeypatch):
    """`$CARGO_VOUCH_CONFIG` inside tmp_path, so the enrollment file lands beside it."""
    directory = tmp_path / "config"
    monkeypatch.setenv("CARGO_VOUCH_CONFIG", str(directory / "config.toml"))
    monkeypatch.delenv("SOFT_FIDO_STATE", raising=False)
    return directory


@pytest.fixture
def soft():
    return SoftAuthenticator()


@pytest.fixture
def enrolled(config_dir, soft):
    """An enrollment saved to (and loaded back from) the enrollment file."""
    enrollment.save_enrollment(device.enroll(soft))
    loaded = enrollment.load_enrollment()
    assert loaded is not None
    return loaded


async def touch_for(enrolled, soft, *, counters=None, timeout=5.0, messages=None, intent=PUBLISH):
    messages = [] if messages is None else messages
    return await device.require_touch(
        intent, enrolled, lambda: soft, on_wait=messages.append, timeout=timeout, counters=counters or CounterStore()
    )


def enrollment_file(config_dir):
    return json.loads((config_dir / enrollment.ENROLLMENT_FILE).read_text())
