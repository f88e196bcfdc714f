"""The write relay's promises, spoken to over a real loopback socket as mitmproxy speaks to
it, with a real HTTPS origin as the registry: what it answers for ids it never handed out,
for bodies that are not Cargo's, for crates over the limit, for a client that hangs up and
for a registry that cannot be reached — and that none of those sends anything upstream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from mitmproxy import http
from mitmproxy.test import tflow, tutils

from cargo_vouch.config import parse_config
from cargo_vouch.protocol import Operation, Session, Token
from cargo_vouch.proxy.state import VouchState
from cargo_vouch.proxy.write_gate import WriteGate
from cargo_vouch.proxy.write_relay import WriteRelay
from examples.demo.cratebuild import CrateSpec, publish_body
from examples.demo.tls import make_test_pki
from tests.fixtures.origin import TlsOrigin

TOKEN = "relay-test-token-4f1c"


@dataclass
class CountingProvider:
    """The provider contract, answering one token and remembering what it was asked."""

    description: str = "test provider"
    login_hint: str = "none"
    asked: list[Operation] = field(default_factory=list)

    async def get(self, operation: Operation) -> Token:
        self.asked.append(operation)
        return Token(TOKEN, Session())


@dataclass
class Relay:
    relay: WriteRelay
    state: VouchState
    origin: TlsOrigin
    provider: CountingProvider

    async def divert_publish(self, content_length: int | None = None, port: int | None = None) -> str:
        """A publish flow as the injector hands it over; returns the path it now has."""
        headers = [(b"Content-Type", b"application/octet-stream")]
        if content_length is not None:
            headers.append((b"Content-Length", str(content_length).encode()))
        flow = tflow.tflow(req=tutils.treq(
            host="127.0.0.1", port=port or self.origin.port, scheme=b"https", method=b"PUT",
            path=b"/web/api/v1/crates/new", headers=http.Headers(headers),
        ))
        route = self.state.router.match("https", "127.0.0.1", self.origin.port, "/web/api/v1/crates/new", "PUT")
        assert route is not None
        await self.relay.divert(flow, route)
        assert flow.request.host == "127.0.0.1" and flow.request.port == self.relay.port
        return flow.request.path


async def exchange(port: int, head: bytes, body: bytes = b"", close_after_send: bool = False) -> bytes:
    """One request to the relay, as raw HTTP/1.1 bytes; the whole answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head + body)
    await writer.drain()
    if close_after_send:
        writer.close()
        await writer.wait_closed()
        return b""
    answer = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    return answer


async def log_line(caplog: pytest.LogCaptureFixture, line: str, timeout: float = 10) -> None:
    """Wait, on this event loop, until the relay has logged `line`."""
    async with asyncio.timeout(timeout):
        while line not in caplog.text:
            await asyncio.sleep(0)


def put(path: str, length: int) -> bytes:
    return f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {length}\r\n\r\n".encode()


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[Relay]:
    pki = make_test_pki(tmp_path / "pki")
    with TlsOrigin(tmp_path / "origin", pki) as origin:
        config = parse_config(
            {"registries": {"corp": {
                "index": f"sparse+{origin.url}/index/", "allow-publish": True, "max-publish-size": "64K",
            }}},
            tmp_path / "cargo-vouch.toml",
        )
        state = VouchState()
        state.apply(config, pki.ca_cert)
        state.router.registries[0].learn({"api": f"{origin.url}/web"})
        provider = CountingProvider()
        state.providers["corp"] = provider
        write_relay = WriteRelay(state, WriteGate(state))
        try:
            yield Relay(write_relay, state, origin, provider)
        finally:
            await write_relay.stop()


async def test_a_publish_reaches_the_registry_with_the_token_for_its_crate(relay: Relay) -> None:
    body = publish_body(CrateSpec("hello", "0.2.0"))
    path = await relay.divert_publish(len(body))

    answer = await exchange(relay.relay.port, put(path, len(body)), body)

    assert answer.startswith(b"HTTP/1.1 200 ")
    [seen] = relay.origin.requests
    assert (seen.method, seen.path) == ("PUT", "/web/api/v1/crates/new")
    assert dict(seen.headers)["Authorization"] == TOKEN
    [operation] = relay.provider.asked
    assert (operation.kind, operation.name, operation.vers) == ("publish", "hello", "0.2.0")  # type: ignore[union-attr]


async def test_an_id_the_relay_never_handed_out_is_404(relay: Relay) -> None:
    await relay.relay.start()
    answer = await exchange(relay.relay.port, put("/not-an-id", 4), b"abcd")
    assert answer.startswith(b"HTTP/1.1 404 ") and b"not a request this proxy diverted" in answer
    assert relay.origin.requests == [] and relay.provider.asked == []


async def test_each_id_serves_once(relay: Relay) -> None:
    body = publish_body(CrateSpec("hello", "0.2.0"))
    path = await relay.divert_publish(len(body))
    assert (await exchange(relay.relay.port, put(path, len(body)), body)).startswith(b"HTTP/1.1 200 ")
    again = await exchange(relay.relay.port, put(path, len(body)), body)
    assert again.startswith(b"HTTP/1.1 404 ")
    assert len(relay.origin.requests) == 1


async def test_a_body_that_is_not_cargo_s_publish_format_is_400(relay: Relay) -> None:
    body = b"\x05\x00\x00\x00{not json"
    path = await relay.divert_publish(len(body))

    answer = await exchange(relay.relay.port, put(path, len(body)), body)

    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"cargo-vouch: the publish body is not Cargo's publish format" in answer
    assert relay.origin.requests == [] and relay.provider.asked == []


async def test_a_crate_over_max_publish_size_is_413(relay: Relay) -> None:
    body = publish_body(CrateSpec("hello", "0.2.0"), crate=b"\0" * (65 * 1024))
    path = await relay.divert_publish()  # no Content-Length: only the body tells

    answer = await exchange(relay.relay.port, put(path, len(body)), body)

    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"larger than max-publish-size (65536 bytes) of [registries.corp]" in answer
    assert relay.origin.requests == [] and relay.provider.asked == []


async def test_a_client_that_hangs_up_mid_body_sends_nothing(relay: Relay, caplog: pytest.LogCaptureFixture) -> None:
    body = publish_body(CrateSpec("hello", "0.2.0"))
    path = await relay.divert_publish(len(body))

    await exchange(relay.relay.port, put(path, len(body)), body[: len(body) // 2], close_after_send=True)

    await log_line(caplog, "cargo-vouch: write relay: the client hung up mid-request (RemoteProtocolError); nothing was sent")
    assert relay.origin.requests == [] and relay.provider.asked == []


async def test_an_unreachable_registry_is_a_502_that_names_why_and_not_the_token(
    relay: Relay, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    closed = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = closed.sockets[0].getsockname()[1]
    closed.close()
    await closed.wait_closed()  # nothing listens on `port` now
    body = publish_body(CrateSpec("hello", "0.2.0"))
    path = await relay.divert_publish(len(body), port=port)

    answer = await exchange(relay.relay.port, put(path, len(body)), body)

    assert answer.startswith(b"HTTP/1.1 502 ")
    assert b"cargo-vouch: publish to registry 'corp' failed: ConnectionRefusedError: Connect call failed" in answer
    assert TOKEN.encode() not in answer and TOKEN not in caplog.text
    assert "corp PUT /web/api/v1/crates/new publish sub=- expires_in=- -> error: ConnectionRefusedError" in caplog.text
