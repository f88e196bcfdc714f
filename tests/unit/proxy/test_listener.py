"""The proxy's sockets are bound before mitmproxy loads: a connection made at once waits in
the backlog; an address that cannot be used is one line."""

from __future__ import annotations

import socket

import pytest

from cargo_vouch.config import ListenAddress
from cargo_vouch.proxy.listener import ListenError, bind_listeners, bound_address


def test_a_connection_before_anyone_accepts_waits_in_the_backlog() -> None:
    listeners = bind_listeners(ListenAddress("127.0.0.1", 0))
    try:
        address = bound_address(listeners)
        assert address.host == "127.0.0.1" and address.port > 0
        with socket.create_connection((address.host, address.port), timeout=5) as client:
            client.sendall(b"CONNECT x:443 HTTP/1.1\r\n\r\n")
            listeners[0].setblocking(True)
            accepted, _ = listeners[0].accept()
            with accepted:
                assert accepted.recv(100).startswith(b"CONNECT x:443")
    finally:
        for sock in listeners:
            sock.close()


def test_localhost_listens_on_one_port_for_every_address_it_names() -> None:
    listeners = bind_listeners(ListenAddress("localhost", 0))
    try:
        assert len({sock.getsockname()[1] for sock in listeners}) == 1
        assert bound_address(listeners).host in ("127.0.0.1", "::1")
    finally:
        for sock in listeners:
            sock.close()


def taken_port_error() -> tuple[int, str]:
    """The error for a port this process already listens on."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ListenError) as caught:
            bind_listeners(ListenAddress("127.0.0.1", port))
    return port, str(caught.value)


def test_a_taken_port_is_one_line_that_says_what_to_do() -> None:
    port, message = taken_port_error()
    assert message.startswith(f"cannot listen on 127.0.0.1:{port}: Address already in use")
    assert "--listen" in message and "\n" not in message


def test_a_port_this_user_holds_already_says_so() -> None:
    """Most often the port is taken by a proxy of the user's own, still running."""
    assert "(held by you: is a proxy running already?)" in taken_port_error()[1]
