"""Cargo's publish body, parsed while it streams: what the provider is told about a crate."""

from __future__ import annotations

import hashlib
import json
import struct
import tracemalloc

import pytest

from cargo_vouch.proxy.publish_body import PublishBodyError, PublishSpool, PublishTooLarge
from examples.demo.cratebuild import CrateSpec, build_crate, publish_body


def feed_in_chunks(spool: PublishSpool, body: bytes, size: int) -> None:
    for start in range(0, len(body), size):
        spool.feed(body[start : start + size])


@pytest.mark.parametrize("chunk", [1, 3, 7, 4096, 10**9])
def test_name_version_and_checksum_whatever_the_chunking(tmp_path, chunk: int) -> None:
    spec = CrateSpec("newlib", "0.2.0")
    body = publish_body(spec)
    with PublishSpool(limit=10**9, directory=tmp_path) as spool:
        feed_in_chunks(spool, body, chunk)
        crate = spool.finish()
        assert spool.file.read() == body  # spooled whole, read back from the start
    assert (crate.name, crate.vers, crate.size) == ("newlib", "0.2.0", len(body))
    assert crate.cksum == hashlib.sha256(build_crate(spec)).hexdigest()
    assert list(tmp_path.iterdir()) == []  # the spool file is gone


def test_spool_file_has_no_name_another_process_could_open(tmp_path) -> None:
    with PublishSpool(limit=10**6, directory=tmp_path) as spool:
        spool.feed(publish_body(CrateSpec("newlib", "0.2.0")))
        assert list(tmp_path.iterdir()) == []


def test_over_the_limit_stops_at_once(tmp_path) -> None:
    body = publish_body(CrateSpec("newlib", "0.2.0"))
    with PublishSpool(limit=len(body) - 1, directory=tmp_path) as spool:
        spool.feed(body[:-1])
        with pytest.raises(PublishTooLarge):
            spool.feed(body[-1:])


def body_with(meta: bytes, crate: bytes, declared: int | None = None) -> bytes:
    return struct.pack("<I", len(meta)) + meta + struct.pack("<I", len(crate) if declared is None else declared) + crate


@pytest.mark.parametrize(
    "body,problem",
    [
        (b"\x05\x00", "ends before the .crate"),
        (body_with(b"not json", b"x"), "not JSON"),
        (body_with(json.dumps({"vers": "1.0.0"}).encode(), b"x"), "no 'name'"),
        (body_with(json.dumps({"name": "a", "vers": "1"}).encode(), b"abc", declared=10), r"cut short \(3 of 10"),
        (body_with(json.dumps({"name": "a", "vers": "1"}).encode(), b"abc", declared=2), "after the end"),
    ],
)
def test_malformed_bodies_are_named(tmp_path, body: bytes, problem: str) -> None:
    with PublishSpool(limit=10**6, directory=tmp_path) as spool, pytest.raises(PublishBodyError, match=problem):
        spool.feed(body)
        spool.finish()


def test_a_large_crate_is_not_held_in_memory(tmp_path) -> None:
    meta = json.dumps({"name": "big", "vers": "1.0.0"}).encode()
    chunk = b"\xab" * (1 << 20)
    crate_len = 64 * len(chunk)
    expected = hashlib.sha256()
    tracemalloc.start()
    try:
        with PublishSpool(limit=10**9, directory=tmp_path) as spool:
            spool.feed(struct.pack("<I", len(meta)) + meta + struct.pack("<I", crate_len))
            for _ in range(64):
                spool.feed(chunk)
                expected.update(chunk)
            crate = spool.finish()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert crate.cksum == expected.hexdigest()
    assert peak < 4 * len(chunk)  # 64 MiB went through; a few chunks at most were held
