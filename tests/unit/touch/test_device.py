"""Waiting for a touch: approvals, refusals, timeouts, cancellation and queued writes."""

from __future__ import annotations

import asyncio
import time

import pytest

from cargo_vouch.protocol import Owners, Yank
from cargo_vouch.touch import device
from cargo_vouch.touch.challenge import WriteIntent
from cargo_vouch.touch.enrollment import CounterStore, TouchError, load_enrollment
from tests.fixtures.soft_fido import SoftAuthenticator
from tests.unit.touch.conftest import PUBLISH, enrollment_file, touch_for


async def test_touch_approves_and_records_the_counter(config_dir, enrolled, soft):
    counters = CounterStore()
    assert await touch_for(enrolled, soft, counters=counters) == 1
    assert enrollment_file(config_dir)["last_counter"] == 1
    assert await touch_for(enrolled, soft, counters=counters) == 2
    assert enrollment_file(config_dir)["last_counter"] == 2
    assert load_enrollment().last_counter == 2


async def test_on_wait_prompt_comes_before_the_wait(enrolled, soft):
    messages: list[str] = []
    seen_when_opened: list[list[str]] = []

    def factory():
        seen_when_opened.append(list(messages))
        return soft

    await device.require_touch(PUBLISH, enrolled, factory, on_wait=messages.append, counters=CounterStore())
    assert messages == ["touch your key to publish hello v0.1.0 to corp (.crate sha256 aaaaaaaaaaaaaaaa)"]
    assert seen_when_opened == [messages]
    owners = WriteIntent("corp", Owners("hello"))
    await touch_for(enrolled, soft, messages=messages, intent=owners)
    assert messages[-1] == "touch your key to change owners of hello on corp"


async def test_no_presence_is_refused(enrolled, soft):
    soft.update(mode="no-presence")
    with pytest.raises(TouchError, match=r"^no user presence \(the key was not touched\)$"):
        await touch_for(enrolled, soft)


async def test_wrong_credential_is_refused(enrolled, soft):
    soft.update(mode="wrong-credential")
    with pytest.raises(TouchError) as caught:
        await touch_for(enrolled, soft)
    message = str(caught.value)
    assert message.startswith("the assertion came from credential ")
    assert message.endswith(", not the enrolled one: run 'cargo vouch enroll'")
    assert enrolled.credential_id.hex()[:16] not in message


async def test_replayed_assertion_does_not_verify(enrolled, soft):
    counters = CounterStore()
    await touch_for(enrolled, soft, counters=counters)
    soft.update(mode="replay")
    with pytest.raises(TouchError, match=r"^signature does not verify$"):
        await touch_for(enrolled, soft, counters=counters)


async def test_timeout_stops_the_device_and_the_thread(enrolled, soft):
    soft.update(mode="timeout")
    started = time.monotonic()
    with pytest.raises(TouchError, match=r"^no touch within 1 s; the write was not sent$"):
        await touch_for(enrolled, soft, timeout=1.0)
    assert time.monotonic() - started < 3.0
    assert soft.cancelled_calls == 1  # the device was told to stop waiting...
    assert soft.calls_in_progress == 0  # ...and the worker's call returned
    assert soft.closes >= 1
    assert not device._DEVICE_LOCK.locked()
    soft.update(mode="approve")  # the next write works again
    assert await touch_for(enrolled, soft) == 1


async def test_cancelled_caller_stops_the_device(enrolled, soft):
    soft.update(mode="timeout")
    task = asyncio.ensure_future(touch_for(enrolled, soft, timeout=30.0))
    assert await asyncio.to_thread(soft.waiting.wait, 10)  # the key is waiting for its touch
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert soft.cancelled_calls == 1
    assert soft.calls_in_progress == 0


async def test_key_without_the_credential(enrolled):
    other_key = SoftAuthenticator()
    device.enroll(other_key)
    with pytest.raises(TouchError, match="does not hold the enrolled credential"):
        await touch_for(enrolled, other_key)


async def test_queued_writes_are_announced_when_the_key_is_theirs(enrolled, soft):
    """Two writes at once: the second's prompt appears only once the key works for it, so
    the last line printed always names the write the key is signing."""
    messages: list[str] = []
    seen_when_opened: list[list[str]] = []

    def factory():
        seen_when_opened.append(list(messages))
        return soft

    yank = WriteIntent("corp", Yank("hello", "0.1.0"))
    counters = CounterStore()
    await asyncio.gather(
        device.require_touch(PUBLISH, enrolled, factory, on_wait=messages.append, counters=counters),
        device.require_touch(yank, enrolled, factory, on_wait=messages.append, counters=counters),
    )
    # When the key is opened for a write, the newest prompt is that write's own.
    assert [len(seen) for seen in seen_when_opened] == [1, 2]
    assert sorted(messages) == sorted(["touch your key to publish hello v0.1.0 to corp (.crate sha256 aaaaaaaaaaaaaaaa)",
                                       "touch your key to yank hello v0.1.0 on corp"])
