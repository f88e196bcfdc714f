"""The owner of a connection's client socket, asked of the kernel for that one socket,
agrees with /proc/net/tcp's list of every socket (real sockets)."""

from __future__ import annotations

import ipaddress
import os
import socket

import pytest

from cargo_vouch.proxy import peers, sock_diag

pytestmark = pytest.mark.skipif(not peers.lookup_supported(), reason="not Linux")


def ends(client_family: int, server_host: str, connect_to: str) -> tuple[tuple, tuple, list[socket.socket]]:
    server = socket.socket(socket.AF_INET6 if ":" in server_host else socket.AF_INET)
    server.bind((server_host, 0))
    server.listen()
    client = socket.socket(client_family)
    if client_family == socket.AF_INET6:
        client.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    client.connect((connect_to, server.getsockname()[1]))
    accepted, peer = server.accept()
    ours = accepted.getsockname()
    return peer, ours, [server, client, accepted]


@pytest.mark.parametrize("family,server_host,connect_to", [
    (socket.AF_INET, "127.0.0.1", "127.0.0.1"),
    (socket.AF_INET6, "::1", "::1"),
    (socket.AF_INET6, "127.0.0.1", "::ffff:127.0.0.1"),  # an IPv4 connection from an IPv6 socket
])
def test_the_one_socket_lookup_agrees_with_the_full_list(family: int, server_host: str, connect_to: str) -> None:
    peer, ours, held = ends(family, server_host, connect_to)
    try:
        local = (ipaddress.ip_address(peer[0].removeprefix("::ffff:")), peer[1])
        remote = (ipaddress.ip_address(ours[0].removeprefix("::ffff:")), ours[1])
        assert sock_diag.tcp_owner(local, remote) == peers.listed_owner(local, remote) == os.geteuid()
        assert peers.socket_owner(peer[:2], ours[:2]) == os.geteuid()
    finally:
        for sock in held:
            sock.close()


def test_no_such_socket_has_no_owner() -> None:
    peer, ours, held = ends(socket.AF_INET, "127.0.0.1", "127.0.0.1")
    try:
        remote = (ipaddress.ip_address(ours[0]), ours[1])
        assert sock_diag.tcp_owner((ipaddress.ip_address("127.0.0.1"), 1), remote) is None
    finally:
        for sock in held:
            sock.close()
