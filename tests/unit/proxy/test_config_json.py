"""A sparse config.json on its way to Cargo: read and rewritten in bounded memory, and an
answer that is not one is never passed on as if it were."""

from __future__ import annotations

import json
import tracemalloc

from mitmproxy import http
from mitmproxy.test import tutils

from tests.unit.proxy.conftest import SPARSE_CONFIG, registry_request

MiB = 1 << 20


async def config_json_answer(proxy, headers=()):  # type: ignore[no-untyped-def]
    tctx, state, _, injector = proxy(SPARSE_CONFIG)
    flow = registry_request(path="/index/config.json")
    await injector.requestheaders(flow)
    flow.response = tutils.tresp(status_code=200, content=b"", headers=http.Headers(list(headers)))
    injector.responseheaders(flow)
    assert callable(flow.response.stream)  # streamed through our callable, never buffered whole
    return flow, state


async def test_an_endless_config_json_costs_bounded_memory(proxy, vouch_session, caplog):
    flow, state = await config_json_answer(proxy)
    stream = flow.response.stream
    chunk = b"[" * (64 * 1024)
    tracemalloc.start()
    try:
        passed = [stream(chunk) for _ in range(64)]  # 4 MiB of an endless body
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert passed == [[]] * 64  # nothing goes out while it is read
    assert peak < 2 * MiB
    end = stream(b"")
    assert end == b"cargo-vouch: config.json of registry 'corp' is larger than 1048576 bytes\n"
    assert "larger than 1048576 bytes; not passed on to Cargo" in caplog.text
    assert not state.router.registries[0].learned


async def test_a_declared_length_over_the_cap_is_refused_at_once(proxy, vouch_session):
    flow, _ = await config_json_answer(proxy, [(b"Content-Length", str(5 * MiB).encode())])
    assert flow.response.status_code == 502
    assert flow.response.stream(b"") == b"cargo-vouch: config.json of registry 'corp' is 5242880 bytes, over 1048576\n"


async def test_deeply_nested_json_is_refused_not_a_crash(proxy, vouch_session, caplog):
    flow, state = await config_json_answer(proxy)
    body = b"[" * 200_000 + b"]" * 200_000
    assert len(body) < MiB
    assert flow.response.stream(body) == []
    assert flow.response.stream(b"") == b"cargo-vouch: registry 'corp': config.json is not JSON\n"
    assert not state.router.registries[0].learned


async def test_a_compressed_answer_is_not_unpacked(proxy, vouch_session):
    """Asked for with Accept-Encoding: identity; a gzip bomb is not opened."""
    flow, _ = await config_json_answer(proxy, [(b"Content-Encoding", b"gzip")])
    flow.response.stream(b"\x1f\x8b...")
    assert flow.response.stream(b"") == b"cargo-vouch: config.json of registry 'corp' came gzip-encoded\n"


async def test_a_config_json_in_pieces_is_learned_and_rewritten(proxy, vouch_session):
    flow, state = await config_json_answer(proxy)
    body = json.dumps({"dl": "https://cargo.corp.example/dl", "auth-required": True}).encode()
    held = [flow.response.stream(piece) for piece in (body[:7], body[7:])]
    handed = flow.response.stream(b"")
    assert held == [[], []]
    assert json.loads(handed) == {"dl": "https://cargo.corp.example/dl"}
    assert str(state.router.registries[0].dl) == "https://cargo.corp.example:443/dl/"
