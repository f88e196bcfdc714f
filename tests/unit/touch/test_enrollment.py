"""The enrollment file: beside the config, private, public data only, counters kept."""

from __future__ import annotations

import base64
import json
import stat

import pytest
from cryptography.hazmat.primitives import serialization

from cargo_vouch.touch import enrollment
from cargo_vouch.touch.enrollment import CounterStore, TouchError
from tests.unit.touch.conftest import enrollment_file, touch_for


def test_enrollment_is_beside_the_config(config_dir, enrolled):
    assert enrollment.enrollment_path() == config_dir / "fido2-enrollment.json"
    assert enrolled.path == config_dir / "fido2-enrollment.json"
    assert enrolled.rp_id == "cargo-vouch"
    assert enrolled.aaguid == "5eff7a1d-0c0a-4d6e-9f00-c0ffee000001"
    assert enrollment.enrollment_path(config_dir / "other" / "x.toml") == config_dir / "other" / "fido2-enrollment.json"


async def test_counter_going_back_is_refused_after_a_restart(config_dir, enrolled, soft):
    counters = CounterStore()
    await touch_for(enrolled, soft, counters=counters)
    await touch_for(enrolled, soft, counters=counters)
    soft.update(counter=0)  # a clone made before those two touches
    reloaded = enrollment.load_enrollment()  # a new proxy process: fresh memory, counter from the file
    assert reloaded.last_counter == 2
    with pytest.raises(TouchError, match=r"^signature counter went from 2 to 1: a replayed or cloned authenticator$"):
        await touch_for(reloaded, soft, counters=CounterStore())
    assert enrollment_file(config_dir)["last_counter"] == 2


async def test_memory_keeps_the_counter_when_the_file_is_rolled_back(config_dir, enrolled, soft):
    counters = CounterStore()
    await touch_for(enrolled, soft, counters=counters)
    await touch_for(enrolled, soft, counters=counters)
    data = enrollment_file(config_dir)
    data["last_counter"] = 0
    (config_dir / enrollment.ENROLLMENT_FILE).write_text(json.dumps(data))
    soft.update(counter=0)
    with pytest.raises(TouchError, match="went from 2 to 1"):
        await touch_for(enrollment.load_enrollment(), soft, counters=counters)


def test_counter_zero_means_no_counter(enrolled):
    enrolled.path = None
    counters = CounterStore()
    counters.advance(enrolled, 0)
    counters.advance(enrolled, 0)  # an authenticator without a counter
    counters.advance(enrolled, 5)
    with pytest.raises(TouchError, match="went from 5 to 0"):
        counters.advance(enrolled, 0)
    with pytest.raises(TouchError, match="went from 5 to 5"):
        counters.advance(enrolled, 5)


def test_enrollment_file_is_private_and_public_only(config_dir, enrolled, soft):
    path = config_dir / enrollment.ENROLLMENT_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert set(json.loads(text)) == {"version", "rp_id", "credential_id", "public_key", "created", "aaguid", "last_counter"}
    assert "PRIVATE" not in text
    key = serialization.load_pem_private_key(soft.state()["key_pem"].encode(), None)
    secret = key.private_numbers().private_value.to_bytes(32, "big")
    assert secret.hex() not in text
    assert base64.urlsafe_b64encode(secret).decode().rstrip("=") not in text
    assert base64.b64encode(secret).decode() not in text


def test_absent_and_corrupt_enrollment(config_dir):
    assert enrollment.load_enrollment() is None
    config_dir.mkdir(parents=True)
    path = config_dir / enrollment.ENROLLMENT_FILE
    for content in ("{not json", "[]", '{"version": 1}', '{"version": 1, "rp_id": "x", "created": "now", '
                    '"last_counter": 0, "credential_id": "AA", "public_key": "oA"}'):
        path.write_text(content)
        with pytest.raises(TouchError) as caught:
            enrollment.load_enrollment()
        message = str(caught.value)
        assert "\n" not in message
        assert message.startswith(f"{path}: not a valid cargo-vouch FIDO2 enrollment (")
        assert message.endswith("run 'cargo vouch enroll --force'")
