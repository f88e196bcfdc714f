"""The FIDO2 touch for writes, against a software CTAP2 authenticator."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import stat
import time

import pytest
from fido2.ctap2 import Ctap2

from addon import touch
from addon.touch import CounterStore, TouchError, WriteIntent
from tests.fixtures import soft_fido
from tests.fixtures.soft_fido import SoftAuthenticator

PUBLISH = WriteIntent("corp", "publish", "hello", "0.1.0", "a" * 64)


@pytest.fixture
def config_dir(tmp_path, monkeypatch):
    """`$CARGO_VOUCH_CONFIG` inside tmp_path, so the enrollment file lands beside it."""
    directory = tmp_path / "config"
    monkeypatch.setenv("CARGO_VOUCH_CONFIG", str(directory / "config.toml"))
    monkeypatch.delenv(touch.DEVICE_ENV, raising=False)
    monkeypatch.delenv(soft_fido.STATE_ENV, raising=False)
    return directory


@pytest.fixture
def soft():
    return SoftAuthenticator()


@pytest.fixture
def enrolled(config_dir, soft):
    """An enrollment saved to (and loaded back from) the enrollment file."""
    touch.save_enrollment(touch.enroll(soft))
    enrollment = touch.load_enrollment()
    assert enrollment is not None
    return enrollment


async def _touch(enrollment, soft, *, counters=None, timeout=5.0, messages=None, intent=PUBLISH):
    messages = [] if messages is None else messages
    return await touch.require_touch(
        intent, enrollment, lambda: soft, on_wait=messages.append, timeout=timeout, counters=counters or CounterStore()
    )


def _file(config_dir):
    return json.loads((config_dir / touch.ENROLLMENT_FILE).read_text())


def test_describe_names_the_write():
    assert PUBLISH.describe() == "publish hello v0.1.0 to corp"
    assert WriteIntent("corp", "yank", "hello", "0.1.0").describe() == "yank hello v0.1.0 on corp"
    assert WriteIntent("corp", "unyank", "hello", "0.1.0").describe() == "unyank hello v0.1.0 on corp"
    assert WriteIntent("corp", "owners", "hello").describe() == "change owners of hello on corp"
    added = WriteIntent("corp", "owners", "hello", method="PUT", users=("bob", "eve"))
    assert added.describe() == "add bob, eve to the owners of hello on corp"
    removed = WriteIntent("corp", "owners", "hello", method="DELETE", users=("bob",))
    assert removed.describe() == "remove bob from the owners of hello on corp"
    nonce = b"\0" * 32
    assert touch.client_data(added, nonce) != touch.client_data(
        WriteIntent("corp", "owners", "hello", method="PUT", users=("bob", "mallory")), nonce)
    assert touch.client_data(added, nonce) != touch.client_data(
        WriteIntent("corp", "owners", "hello", method="DELETE", users=("bob", "eve")), nonce)
    with pytest.raises(ValueError):
        WriteIntent("corp", "read", "hello")


def test_client_data_is_canonical_and_binds_every_field():
    nonce = b"\x01" * 32
    data = json.loads(touch.client_data(PUBLISH, nonce))
    assert data == {
        "type": "cargo-vouch.write",
        "registry": "corp",
        "operation": "publish",
        "name": "hello",
        "vers": "0.1.0",
        "cksum": "a" * 64,
        "nonce": "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE",
    }
    assert touch.client_data(PUBLISH, nonce) == touch.client_data(PUBLISH, nonce)
    tampered = WriteIntent("corp", "publish", "hello", "0.1.0", "b" * 64)
    assert touch.client_data(tampered, nonce) != touch.client_data(PUBLISH, nonce)


def test_enrollment_is_beside_the_config(config_dir, enrolled):
    assert touch.enrollment_path() == config_dir / "fido2-enrollment.json"
    assert enrolled.path == config_dir / "fido2-enrollment.json"
    assert enrolled.rp_id == "cargo-vouch"
    assert enrolled.aaguid == "5eff7a1d-0c0a-4d6e-9f00-c0ffee000001"
    assert touch.enrollment_path(config_dir / "other" / "x.toml") == config_dir / "other" / "fido2-enrollment.json"


async def test_touch_approves_and_records_the_counter(config_dir, enrolled, soft):
    counters = CounterStore()
    assert await _touch(enrolled, soft, counters=counters) == 1
    assert _file(config_dir)["last_counter"] == 1
    assert await _touch(enrolled, soft, counters=counters) == 2
    assert _file(config_dir)["last_counter"] == 2
    assert touch.load_enrollment().last_counter == 2


async def test_on_wait_prompt_comes_before_the_wait(enrolled, soft):
    messages: list[str] = []
    seen_when_opened: list[list[str]] = []

    def factory():
        seen_when_opened.append(list(messages))
        return soft

    await touch.require_touch(PUBLISH, enrolled, factory, on_wait=messages.append, counters=CounterStore())
    assert messages == ["touch your key to publish hello v0.1.0 to corp"]
    assert seen_when_opened == [messages]
    owners = WriteIntent("corp", "owners", "hello")
    await _touch(enrolled, soft, messages=messages, intent=owners)
    assert messages[-1] == "touch your key to change owners of hello on corp"


async def test_no_presence_is_refused(enrolled, soft):
    soft.update(mode="no-presence")
    with pytest.raises(TouchError, match=r"^no user presence \(the key was not touched\)$"):
        await _touch(enrolled, soft)


async def test_wrong_credential_is_refused(enrolled, soft):
    soft.update(mode="wrong-credential")
    with pytest.raises(TouchError) as caught:
        await _touch(enrolled, soft)
    message = str(caught.value)
    assert message.startswith("the assertion came from credential ")
    assert message.endswith(", not the enrolled one: run 'cargo vouch enroll'")
    assert enrolled.credential_id.hex()[:16] not in message


async def test_replayed_assertion_does_not_verify(enrolled, soft):
    counters = CounterStore()
    await _touch(enrolled, soft, counters=counters)
    soft.update(mode="replay")
    with pytest.raises(TouchError, match=r"^signature does not verify$"):
        await _touch(enrolled, soft, counters=counters)


async def test_timeout_stops_the_device_and_the_thread(enrolled, soft):
    soft.update(mode="timeout")
    started = time.monotonic()
    with pytest.raises(TouchError, match=r"^no touch within 1 s; the write was not sent$"):
        await _touch(enrolled, soft, timeout=1.0)
    assert time.monotonic() - started < 3.0
    assert soft.cancelled_calls == 1  # the device was told to stop waiting...
    assert soft.calls_in_progress == 0  # ...and the worker's call returned
    assert soft.closes >= 1
    assert not touch._DEVICE_LOCK.locked()
    soft.update(mode="approve")  # the next write works again
    assert await _touch(enrolled, soft) == 1


async def test_cancelled_caller_stops_the_device(enrolled, soft):
    soft.update(mode="timeout")
    task = asyncio.ensure_future(_touch(enrolled, soft, timeout=30.0))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert soft.cancelled_calls == 1
    assert soft.calls_in_progress == 0


async def test_counter_going_back_is_refused_after_a_restart(config_dir, enrolled, soft):
    counters = CounterStore()
    await _touch(enrolled, soft, counters=counters)
    await _touch(enrolled, soft, counters=counters)
    soft.update(counter=0)  # a clone made before those two touches
    reloaded = touch.load_enrollment()  # a new proxy process: fresh memory, counter from the file
    assert reloaded.last_counter == 2
    with pytest.raises(TouchError, match=r"^signature counter went from 2 to 1: a replayed or cloned authenticator$"):
        await _touch(reloaded, soft, counters=CounterStore())
    assert _file(config_dir)["last_counter"] == 2


async def test_memory_keeps_the_counter_when_the_file_is_rolled_back(config_dir, enrolled, soft):
    counters = CounterStore()
    await _touch(enrolled, soft, counters=counters)
    await _touch(enrolled, soft, counters=counters)
    data = _file(config_dir)
    data["last_counter"] = 0
    (config_dir / touch.ENROLLMENT_FILE).write_text(json.dumps(data))
    soft.update(counter=0)
    with pytest.raises(TouchError, match="went from 2 to 1"):
        await _touch(touch.load_enrollment(), soft, counters=counters)


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


def test_assertion_for_another_write_does_not_verify(enrolled, soft):
    """A tampered cksum: the key signed one write, the proxy is asked to let another through."""
    nonce = b"\x02" * 32
    signed_for = hashlib.sha256(touch.client_data(PUBLISH, nonce)).digest()
    tampered = WriteIntent("corp", "publish", "hello", "0.1.0", "b" * 64)
    presented_as = hashlib.sha256(touch.client_data(tampered, nonce)).digest()
    assertion = Ctap2(soft).get_assertion(
        "cargo-vouch", signed_for, [{"type": "public-key", "id": enrolled.credential_id}], options={"up": True}
    )
    with pytest.raises(TouchError, match=r"^signature does not verify$"):
        touch.verify_assertion(enrolled, assertion, presented_as)
    assert touch.verify_assertion(enrolled, assertion, signed_for) == 1


def test_enrollment_file_is_private_and_public_only(config_dir, enrolled, soft):
    path = config_dir / touch.ENROLLMENT_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert set(json.loads(text)) == {"version", "rp_id", "credential_id", "public_key", "created", "aaguid", "last_counter"}
    assert "PRIVATE" not in text
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(soft.state()["key_pem"].encode(), None)
    secret = key.private_numbers().private_value.to_bytes(32, "big")
    assert secret.hex() not in text
    import base64

    assert base64.urlsafe_b64encode(secret).decode().rstrip("=") not in text
    assert base64.b64encode(secret).decode() not in text


def test_absent_and_corrupt_enrollment(config_dir):
    assert touch.load_enrollment() is None
    config_dir.mkdir(parents=True)
    path = config_dir / touch.ENROLLMENT_FILE
    for content in ("{not json", "[]", '{"version": 1}', '{"version": 1, "rp_id": "x", "created": "now", '
                    '"last_counter": 0, "credential_id": "AA", "public_key": "oA"}'):
        path.write_text(content)
        with pytest.raises(TouchError) as caught:
            touch.load_enrollment()
        message = str(caught.value)
        assert "\n" not in message
        assert message.startswith(f"{path}: not a valid cargo-vouch FIDO2 enrollment (")
        assert message.endswith("run 'cargo vouch enroll --force'")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cargo-vouch")
    parser.add_argument("--config")
    commands = parser.add_subparsers(dest="command", required=True)
    touch.add_parser(commands)
    return parser


def _run(*argv: str) -> int:
    args = _parser().parse_args(list(argv))
    return args.func(args)


def test_enroll_command_refuses_to_overwrite_without_force(config_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(touch.DEVICE_ENV, "tests.fixtures.soft_fido:device")
    monkeypatch.setenv(soft_fido.STATE_ENV, str(tmp_path / "soft-fido.json"))
    path = config_dir / touch.ENROLLMENT_FILE

    assert _run("enroll") == 0
    out = capsys.readouterr().out
    first = _file(config_dir)["credential_id"]
    assert out.splitlines()[0] == "touch your key to enroll it for cargo-vouch"
    assert str(path) in out
    assert touch.load_enrollment().short_id() in out

    assert _run("enroll") == 1
    err = capsys.readouterr().err
    assert "already enrolls credential" in err and "--force" in err
    assert _file(config_dir)["credential_id"] == first

    assert _run("enroll", "--force") == 0
    assert _file(config_dir)["credential_id"] != first


def test_enroll_command_follows_config(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(touch.DEVICE_ENV, "tests.fixtures.soft_fido:device")
    monkeypatch.setenv(soft_fido.STATE_ENV, str(tmp_path / "soft-fido.json"))
    assert _run("--config", str(tmp_path / "elsewhere" / "config.toml"), "enroll") == 0
    assert (tmp_path / "elsewhere" / touch.ENROLLMENT_FILE).exists()


def test_enroll_command_without_a_key(config_dir, monkeypatch, capsys):
    import fido2.hid

    monkeypatch.setattr(fido2.hid.CtapHidDevice, "list_devices", classmethod(lambda cls: iter(())))
    assert _run("enroll") == 1
    assert capsys.readouterr().err == "cargo-vouch: no FIDO2 authenticator found: plug in your security key\n"
    assert not (config_dir / touch.ENROLLMENT_FILE).exists()


async def test_device_seam_across_processes_state(config_dir, tmp_path, monkeypatch):
    """What the proxy does in e2e: the device comes from `$CARGO_VOUCH_FIDO_DEVICE`, state from a file."""
    monkeypatch.setenv(touch.DEVICE_ENV, "tests.fixtures.soft_fido:device")
    state = tmp_path / "soft-fido.json"
    monkeypatch.setenv(soft_fido.STATE_ENV, str(state))
    device = touch.open_device()
    assert isinstance(device, SoftAuthenticator)
    assert _run("enroll") == 0  # another `device()` instance, sharing only the state file
    enrollment = touch.load_enrollment()
    messages: list[str] = []
    counter = await touch.require_touch(PUBLISH, enrollment, on_wait=messages.append, counters=CounterStore())
    assert counter == 1
    soft_fido.set_mode("no-presence", state)
    with pytest.raises(TouchError, match="no user presence"):
        await touch.require_touch(PUBLISH, enrollment, on_wait=messages.append, counters=CounterStore())


def test_device_seam_errors(monkeypatch):
    monkeypatch.setenv(touch.DEVICE_ENV, "tests.fixtures.no_such_module:device")
    with pytest.raises(TouchError, match=r"CARGO_VOUCH_FIDO_DEVICE=.*expected MODULE:CALLABLE"):
        touch.open_device()
    monkeypatch.setenv(touch.DEVICE_ENV, "tests.fixtures.soft_fido")
    with pytest.raises(TouchError, match="expected MODULE:CALLABLE"):
        touch.open_device()


async def test_key_without_the_credential(enrolled):
    other_key = SoftAuthenticator()
    touch.enroll(other_key)
    with pytest.raises(TouchError, match="does not hold the enrolled credential"):
        await _touch(enrolled, other_key)


async def test_queued_writes_are_announced_when_the_key_is_theirs(enrolled, soft):
    """Two writes at once: the second's prompt appears only once the key works for it, so
    the last line printed always names the write the key is signing."""
    messages: list[str] = []
    seen_when_opened: list[list[str]] = []

    def factory():
        seen_when_opened.append(list(messages))
        return soft

    yank = WriteIntent("corp", "yank", "hello", "0.1.0")
    counters = CounterStore()
    await asyncio.gather(
        touch.require_touch(PUBLISH, enrolled, factory, on_wait=messages.append, counters=counters),
        touch.require_touch(yank, enrolled, factory, on_wait=messages.append, counters=counters),
    )
    # When the key is opened for a write, the newest prompt is that write's own.
    assert [len(seen) for seen in seen_when_opened] == [1, 2]
    assert sorted(messages) == sorted(["touch your key to publish hello v0.1.0 to corp",
                                       "touch your key to yank hello v0.1.0 on corp"])
