"""Only this user on this machine: connections are checked once, when accepted, against
the owner of the connecting socket (real sockets, real /proc/net/tcp)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest
from mitmproxy import connection
from mitmproxy.test import tflow

from cargo_vouch.proxy import peers
from cargo_vouch.proxy.clients import LocalClients

pytestmark = pytest.mark.skipif(not peers.lookup_supported(), reason="no /proc/net/tcp: socket owners cannot be known")


@pytest.fixture(params=["127.0.0.1", "::1"])
def connected(request: pytest.FixtureRequest) -> Iterator[connection.Client]:
    """A real loopback connection, as mitmproxy describes its client side."""
    family = socket.AF_INET6 if ":" in request.param else socket.AF_INET
    with socket.socket(family) as server:
        server.bind((request.param, 0))
        server.listen()
        with socket.socket(family) as client:
            client.connect(server.getsockname())
            accepted, peer = server.accept()
            with accepted:
                yield connection.Client(peername=peer, sockname=server.getsockname())


def test_a_connection_of_this_user_is_admitted(connected: connection.Client) -> None:
    clients = LocalClients()
    clients.client_connected(connected)
    assert connected.error is None
    flow = tflow.tflow()
    flow.client_conn = connected
    clients.requestheaders(flow)
    assert flow.response is None


def test_a_connection_of_another_uid_is_refused(connected: connection.Client) -> None:
    """The proxy pretends to be another user's: the connecting socket (ours) is not its."""
    clients = LocalClients(uid=os.geteuid() + 4242)
    clients.client_connected(connected)
    assert connected.error == (
        f"cargo-vouch: the connecting socket belongs to uid {os.geteuid()}; "
        f"this proxy serves only uid {os.geteuid() + 4242}"
    )


def test_an_owner_a_user_namespace_gives_every_unmapped_user_is_refused(connected: connection.Client) -> None:
    """Rootless containers on the host's network, the image's USER `nobody`: the proxy's
    uid is the one the namespace shows for every host user it does not map, so another
    user's socket looks like ours."""
    clients = LocalClients(unmapped_uid=os.geteuid())
    clients.client_connected(connected)
    assert connected.error == (
        f"cargo-vouch: the connecting socket shows uid {os.geteuid()}, which this user namespace gives every user "
        f"it does not map, so who connected cannot be told; run the proxy as a uid other than {os.geteuid()}"
    )


def test_the_unmapped_uid_is_known_only_inside_a_user_namespace(tmp_path) -> None:
    uid_map, overflow = tmp_path / "uid_map", tmp_path / "overflowuid"
    overflow.write_text("65534\n")
    uid_map.write_text("         0          0 4294967295\n")
    assert peers.unmapped_uid(uid_map, overflow) is None
    uid_map.write_text("     65534       1000          1\n")
    assert peers.unmapped_uid(uid_map, overflow) == 65534
    assert peers.unmapped_uid(tmp_path / "none", overflow) is None


def test_a_socket_nobody_owns_is_refused() -> None:
    ghost = connection.Client(peername=("127.0.0.1", 1), sockname=("127.0.0.1", 2))
    LocalClients().client_connected(ghost)
    assert ghost.error == "cargo-vouch: cannot find which user owns the connecting socket"


@pytest.mark.parametrize("peer", ["192.0.2.7", "2001:db8::1"])
def test_other_machines_are_refused(peer: str) -> None:
    client = connection.Client(peername=(peer, 50000), sockname=("127.0.0.1", 9001))
    LocalClients(check_owner=False).client_connected(client)
    assert client.error is not None and "loopback clients only" in client.error


def test_a_failing_lookup_refuses_instead_of_serving(connected: connection.Client, monkeypatch) -> None:
    def broken(*_: object) -> int:
        raise OSError("proc is gone")

    monkeypatch.setattr(peers, "socket_owner", broken)
    LocalClients().client_connected(connected)
    assert connected.error == "cargo-vouch: cannot tell who connected (OSError)"


def test_requests_on_a_connection_never_admitted_are_answered_here() -> None:
    flow = tflow.tflow()
    flow.response = None
    LocalClients().requestheaders(flow)
    assert flow.response is not None and flow.response.status_code == 403
    assert b"serves only the user who started it" in flow.response.content
