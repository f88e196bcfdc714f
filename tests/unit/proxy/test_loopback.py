"""Only this machine's clients are served."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("peer,refused", [("127.0.0.1", False), ("::1", False), ("::ffff:127.0.0.1", False),
                                          ("192.0.2.7", True), ("2001:db8::1", True)])
def test_only_loopback_clients_are_served(peer, refused):
    from mitmproxy import connection

    from cargo_vouch.proxy.loopback import LoopbackClients

    client = connection.Client(peername=(peer, 50000), sockname=("127.0.0.1", 9001))
    LoopbackClients().client_connected(client)
    assert (client.error is not None) is refused
