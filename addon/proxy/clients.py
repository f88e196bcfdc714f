"""Only this user on this machine may use the proxy: it hands out registry tokens to
whoever asks.

Loopback only (also while mitmproxy 12 briefly binds its default address at start-up, and
if anyone widens `listen_host`), and on Linux only sockets owned by the proxy's own uid:
another local user must not borrow this user's registry identity. The owner is looked up
once per connection, when it is accepted; every request then checks that its connection
was admitted, so a failure in the lookup can only ever refuse. Where sockets' owners cannot
be known (not Linux), loopback is all that is checked; `cargo vouch run`'s per-run proxy
credential keeps other users out there.
"""

from __future__ import annotations

import os

from mitmproxy import connection, http

from cargo_vouch.config import is_loopback
from cargo_vouch.logs import get_logger
from cargo_vouch.proxy import peers
from cargo_vouch.proxy.answers import plain_refusal

logger = get_logger(__name__)


#: For LocalClients: look the unmapped uid up in this process's user namespace.
FROM_NAMESPACE = -1


class LocalClients:
    def __init__(self, uid: int | None = None, check_owner: bool | None = None, unmapped_uid: int | None = FROM_NAMESPACE) -> None:
        self.uid = os.geteuid() if uid is None else uid
        self.check_owner = peers.lookup_supported() if check_owner is None else check_owner
        #: The owner every unmapped user's socket shows in a user namespace (see peers).
        self.unmapped_uid = peers.unmapped_uid() if unmapped_uid == FROM_NAMESPACE else unmapped_uid
        #: Ids of the connections admitted and still open.
        self._admitted: set[str] = set()

    def client_connected(self, client: connection.Client) -> None:
        try:
            refusal = self._refusal(client)
        except Exception as exc:  # noqa: BLE001 - mitmproxy would log it and serve the client
            refusal = f"cannot tell who connected ({type(exc).__name__})"
        if refusal is None:
            self._admitted.add(client.id)
            return
        client.error = f"cargo-vouch: {refusal}"
        logger.warning(f"refused a connection from {client.peername[0]}:{client.peername[1]}: {refusal}")

    def client_disconnected(self, client: connection.Client) -> None:
        self._admitted.discard(client.id)

    def http_connect(self, flow: http.HTTPFlow) -> None:
        self._refuse_unadmitted(flow)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        self._refuse_unadmitted(flow)

    def _refuse_unadmitted(self, flow: http.HTTPFlow) -> None:
        if flow.client_conn.id not in self._admitted and flow.response is None:
            flow.response = plain_refusal("cargo-vouch: this proxy serves only the user who started it")

    def _refusal(self, client: connection.Client) -> str | None:
        host = str(client.peername[0])
        if not is_loopback(host.removeprefix("::ffff:")):
            return f"{host} is not on this machine: loopback clients only"
        if not self.check_owner:
            return None
        owner = peers.socket_owner(client.peername[:2], client.sockname[:2])
        if owner is None:
            return "cannot find which user owns the connecting socket"
        if owner == self.unmapped_uid:
            return (f"the connecting socket shows uid {owner}, which this user namespace gives every user it "
                    f"does not map, so who connected cannot be told; run the proxy as a uid other than {owner}")
        if owner != self.uid:
            return f"the connecting socket belongs to uid {owner}; this proxy serves only uid {self.uid}"
        return None
