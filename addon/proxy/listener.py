"""The proxy's listening sockets, bound before mitmproxy is even imported.

Binding first settles the address (a taken port is one line) before the second or so of
loading mitmproxy, and a connection made while the proxy finishes starting waits in the
kernel's backlog instead of being refused. No mitmproxy here: this runs before it is loaded.
"""

from __future__ import annotations

import errno
import os
import socket

from cargo_vouch.config import ListenAddress
from cargo_vouch.errors import VouchError
from cargo_vouch.proxy import peers

#: Cargo opens a handful of connections at a time; the kernel caps this anyway.
BACKLOG = 128


class ListenError(VouchError):
    """The address cannot be listened on; the message names it and what to do."""


def bind_listeners(address: ListenAddress) -> list[socket.socket]:
    """Bound, listening, non-blocking sockets for `address` (both families for localhost).

    `address.port` may be 0: every socket then gets the port the first one was given."""
    try:
        infos = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenError(f"cannot listen on {address}: {exc.strerror}") from None
    sockets: list[socket.socket] = []
    port = address.port
    try:
        for family, kind, proto, _, sockaddr in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's servers do
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((sockaddr[0], port, *sockaddr[2:]))
            sock.listen(BACKLOG)
            sock.setblocking(False)
            port = sock.getsockname()[1]
    except OSError as exc:
        for sock in sockets:
            sock.close()
        held = holders(port) if exc.errno == errno.EADDRINUSE else ""
        raise ListenError(
            f"cannot listen on {address}: {exc.strerror or exc}{held}; pick another address with --listen "
            "(or [proxy] listen in the config)"
        ) from None
    return sockets


def holders(port: int) -> str:
    """Who holds a port we could not bind, for the error line: another local user may have
    taken the proxy's port while the proxy was down."""
    owners = peers.listening_owners(port)
    mine = os.geteuid()
    if not owners:
        return ""
    if owners == {mine}:
        return " (held by you: is a proxy running already?)"
    others = ", ".join(str(uid) for uid in sorted(owners - {mine}))
    return f" (held by another local user, uid {others}: Cargo's connections there would go to that user)"


def bound_address(sockets: list[socket.socket]) -> ListenAddress:
    """The address clients use: the first socket's (127.0.0.1 before ::1 for localhost)."""
    host, port = sockets[0].getsockname()[:2]
    return ListenAddress(host, port)
