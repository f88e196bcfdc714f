"""Writes whose token or touch depends on their body go through a relay inside the proxy.

mitmproxy sends a request's headers upstream before its body when the body streams, and
holds the whole body in memory (more than once, briefly) when it does not. A publish needs
its token — and so its headers — to wait for the crate's checksum at the end of the body;
with `touch = true`, an owners change needs its list of users for the prompt and the
challenge. So the addon points such a request at this relay, on loopback: mitmproxy
streams the body to it, the relay reads what it needs (a publish is spooled to a private
file while it is hashed, never held in memory), gets the touch and the token, then sends
the request to the registry itself, over TLS verified like every other upstream
connection, and hands the answer back.

The token never sits on a mitmproxy flow. The relay serves only paths it handed out: one
random, single-use id per diverted request, so no other local process can use it.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from typing import BinaryIO

import h11
from mitmproxy import http

from cargo_vouch.direct_https import verified_context
from cargo_vouch.logs import get_logger, request_text
from cargo_vouch.protocol import Owners, Publish, Write
from cargo_vouch.proxy import peers
from cargo_vouch.proxy.publish_body import PublishBodyError, PublishSpool, PublishTooLarge, too_large_message
from cargo_vouch.proxy.routing import Route
from cargo_vouch.proxy.state import Authenticated, NoToken, VouchState
from cargo_vouch.proxy.write_gate import WriteGate, WriteRefused

logger = get_logger(__name__)

CHUNK = 64 * 1024
#: An owners request is a short list of user names.
MAX_OWNERS_BODY = 64 * 1024
#: A registry's answer to a write is a small JSON document.
MAX_ANSWER = 4 * 1024 * 1024
#: mitmproxy sends the request head at once; anything slower is not mitmproxy.
HEAD_TIMEOUT = 30.0
#: From connecting to the registry to its answer, the crate upload included.
UPSTREAM_TIMEOUT = 300.0
#: Not copied from Cargo's request nor from the registry's answer: hop-by-hop headers, the
#: framing the relay sets itself, and credentials (the client's own, a session the registry opens).
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "content-length", "authorization", "host", "expect",
    "cookie", "set-cookie", "set-cookie2",
}


class RelayRefusal(Exception):
    """The publish is answered by the relay, not the registry: status and a line for Cargo."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Diverted:
    """Where a write was really going, kept while its body streams to the relay."""

    route: Route
    method: str
    host: str
    port: int
    path: str
    headers: list[tuple[bytes, bytes]]
    started: float = field(default_factory=time.monotonic)


class WriteRelay:
    def __init__(self, state: VouchState, gate: WriteGate) -> None:
        self.state = state
        self.gate = gate
        self._diverted: dict[str, Diverted] = {}
        self._server: asyncio.Server | None = None
        self._starting = asyncio.Lock()
        self.port = 0

    async def start(self) -> None:
        async with self._starting:  # two first writes at once: one server
            if self._server is None:
                self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
                self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def divert(self, flow: http.HTTPFlow, route: Route) -> None:
        """Points the flow at the relay; its body then streams there, not upstream."""
        await self.start()
        request = flow.request
        relay_id = secrets.token_urlsafe(24)
        self._diverted[relay_id] = Diverted(
            route, request.method, request.host, request.port, request.path,
            [(k.encode(), v.encode()) for k, v in request.headers.items(multi=True) if k.lower() not in HOP_BY_HOP],
        )
        request.scheme, request.host, request.port = "http", "127.0.0.1", self.port
        request.path = f"/{relay_id}"
        request.headers["Host"] = f"127.0.0.1:{self.port}"
        if "Content-Length" not in request.headers and "Transfer-Encoding" not in request.headers:
            # An HTTP/2 client may send neither; the relay leg is HTTP/1.1 and needs framing.
            request.headers["Transfer-Encoding"] = "chunked"
        request.stream = True

    def forget(self, flow: http.HTTPFlow) -> None:
        self._diverted.pop(flow.request.path.lstrip("/"), None)

    # -- the relay's side of the loopback connection ------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not _own_user(writer):  # only mitmproxy, in this process, has anything to send here
            writer.close()
            return
        conn = h11.Connection(h11.SERVER)
        try:
            async with asyncio.timeout(HEAD_TIMEOUT):  # an idle local connection is not kept
                request = await _next_event(conn, reader)
            if not isinstance(request, h11.Request):
                return
            diverted = self._diverted.pop(request.target.decode("ascii", "replace").lstrip("/"), None)
            if diverted is None:
                await _answer(conn, writer, 404, b"not a request this proxy diverted\n")
                return
            try:
                if isinstance(diverted.route.operation, Owners):
                    status, headers, body = await self._owners(conn, reader, diverted, diverted.route.operation)
                else:
                    status, headers, body = await self._publish(conn, reader, diverted)
            except RelayRefusal as refusal:
                logger.warning(
                    f"{diverted.route.registry.name} {request_text(diverted.method, diverted.path)}: "
                    f"{refusal.message}"
                )
                await _answer(conn, writer, refusal.status, refusal.message.encode() + b"\n")
                return
            await _answer(conn, writer, status, body, headers)
        except Exception as exc:  # noqa: BLE001 - fail closed with an answer, not a dropped connection
            if reader.at_eof():
                logger.warning(f"write relay: the client hung up mid-request ({_reason(exc)}); nothing was sent")
                return
            logger.warning(f"write relay: {_reason(exc)}")
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                try:
                    await _answer(conn, writer, 502, f"cargo-vouch: the write failed ({_reason(exc)})\n".encode())
                except Exception:  # noqa: BLE001 - the connection is gone as well
                    pass
        finally:
            writer.close()

    async def _publish(
        self, conn: h11.Connection, reader: asyncio.StreamReader, diverted: Diverted
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        registry = diverted.route.registry
        with PublishSpool(registry.config.max_publish_size) as spool:
            try:
                while True:
                    event = await _next_event(conn, reader)
                    if isinstance(event, h11.Data):
                        spool.feed(event.data)
                    elif isinstance(event, h11.EndOfMessage):
                        break
                crate = spool.finish()
            except PublishTooLarge:
                raise RelayRefusal(413, too_large_message(registry.name, registry.config.max_publish_size)) from None
            except PublishBodyError as exc:
                raise RelayRefusal(400, f"cargo-vouch: the publish body is not Cargo's publish format: {exc}") from None
            operation = Publish(crate.name, crate.vers, crate.cksum)
            await self._confirm(diverted, operation)
            return await self._forward(reader, diverted, operation, spool.file, crate.size)

    async def _owners(
        self, conn: h11.Connection, reader: asyncio.StreamReader, diverted: Diverted, operation: Owners
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """`cargo owner --add/--remove`: `{"users": [...]}`, small, read whole."""
        body = bytearray()
        while isinstance(event := await _next_event(conn, reader), h11.Data):
            body += event.data
            if len(body) > MAX_OWNERS_BODY:
                raise RelayRefusal(413, "cargo-vouch: the owners request body is too large")
        try:
            users = json.loads(body)["users"]
            if not isinstance(users, list) or not all(isinstance(u, str) for u in users):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise RelayRefusal(400, 'cargo-vouch: the owners request body is not {"users": [...]}') from None
        await self._confirm(diverted, operation, tuple(users))
        return await self._forward(reader, diverted, operation, io.BytesIO(bytes(body)), len(body))

    async def _confirm(self, diverted: Diverted, operation: Write, owners: tuple[str, ...] = ()) -> None:
        """The touch, where the registry wants one: the body has told us what it approves
        (for an owners change, the users it adds or removes)."""
        registry = diverted.route.registry
        if not registry.config.touch:
            return
        from cargo_vouch.touch.challenge import OwnersChange, WriteIntent

        change = OwnersChange(diverted.method, owners) if isinstance(operation, Owners) else None
        try:
            await self.gate.confirm(registry, WriteIntent(registry.name, operation, change))
        except WriteRefused as exc:
            raise RelayRefusal(403, str(exc)) from None

    async def _forward(
        self, reader: asyncio.StreamReader, diverted: Diverted, operation: Write, body: BinaryIO, size: int
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """The request to the registry with the provider's token, and its answer."""
        registry = diverted.route.registry
        try:
            issued = await self.state.token_or_refusal(registry, operation)
        except NoToken as exc:
            raise RelayRefusal(403, str(exc)) from None
        if reader.at_eof():  # Cargo gave up while we waited for the touch or the token
            raise RelayRefusal(400, "cargo-vouch: the client hung up before the request was sent; nothing was sent")
        sent = Authenticated(
            self.state, diverted.route, operation, issued, diverted.method, diverted.path, diverted.started
        )
        try:
            async with asyncio.timeout(UPSTREAM_TIMEOUT):
                status, headers, answer = await self._upstream(diverted, body, size, sent)
        except (OSError, h11.ProtocolError, asyncio.IncompleteReadError, TimeoutError) as exc:
            reason = _reason(exc)
            sent.log(f"error: {reason}")
            raise RelayRefusal(
                502, f"cargo-vouch: {operation.kind} to registry '{registry.name}' failed: {reason}"
            ) from None
        sent.answered(status)
        sent.log(str(status))
        return status, headers, answer

    async def _upstream(
        self, diverted: Diverted, body: BinaryIO, size: int, sent: Authenticated
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """The request as Cargo sent it, with the token; the body read back from `body`."""
        context = verified_context(self.state.upstream_bundle)
        reader, writer = await asyncio.open_connection(
            diverted.host, diverted.port, ssl=context, server_hostname=diverted.host
        )
        conn = h11.Connection(h11.CLIENT)
        try:
            name = f"[{diverted.host}]" if ":" in diverted.host else diverted.host
            host = name if diverted.port == 443 else f"{name}:{diverted.port}"
            headers = [
                (b"Host", host.encode()),
                *diverted.headers,
                (b"Authorization", self.state.authorization(diverted.route.registry, sent.issued).encode()),
                (b"Content-Length", str(size).encode()),
                (b"Connection", b"close"),
            ]
            _send(conn, writer, h11.Request(method=diverted.method, target=diverted.path, headers=headers))
            while chunk := body.read(CHUNK):
                _send(conn, writer, h11.Data(data=chunk))
                await writer.drain()
            _send(conn, writer, h11.EndOfMessage())
            await writer.drain()
            response = await _next_event(conn, reader)
            while isinstance(response, h11.InformationalResponse):  # 100 Continue and the like
                response = await _next_event(conn, reader)
            if not isinstance(response, h11.Response):
                raise h11.RemoteProtocolError("no response from the registry")
            answer = bytearray()
            while isinstance(event := await _next_event(conn, reader), h11.Data):
                answer += event.data
                if len(answer) > MAX_ANSWER:
                    raise h11.RemoteProtocolError("the registry's answer is too large")
            kept = [(k, v) for k, v in response.headers if k.decode().lower() not in HOP_BY_HOP]
            return response.status_code, kept, bytes(answer)
        finally:
            writer.close()


def _own_user(writer: asyncio.StreamWriter) -> bool:
    """Whether the connecting socket is this process's user's (where that can be known)."""
    if not peers.lookup_supported():
        return True
    try:
        return peers.socket_owner(writer.get_extra_info("peername")[:2], writer.get_extra_info("sockname")[:2]) == os.geteuid()
    except (OSError, ValueError, TypeError):
        return False


def _reason(exc: BaseException) -> str:
    """Why an exchange failed, in words that cannot quote a header: h11 would repeat the
    offending header value, which may be the token, so only OS-level reasons are spelled out."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    return type(exc).__name__


async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader) -> object:
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(CHUNK))
            continue
        if event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
            raise ConnectionError("connection closed mid-message")
        return event


async def _answer(
    conn: h11.Connection,
    writer: asyncio.StreamWriter,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    if headers is None:
        headers = [(b"Content-Type", b"text/plain; charset=utf-8")]
    headers = [*headers, (b"Content-Length", str(len(body)).encode()), (b"Connection", b"close")]
    _send(conn, writer, h11.Response(status_code=status, headers=headers))
    _send(conn, writer, h11.Data(data=body))
    _send(conn, writer, h11.EndOfMessage())
    await writer.drain()


def _send(conn: h11.Connection, writer: asyncio.StreamWriter, event: h11.Event) -> None:
    data = conn.send(event)
    if data:
        writer.write(data)
