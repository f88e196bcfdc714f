"""Only this machine may use the proxy: it hands out registry tokens to whoever asks.

The listen address is loopback already; this also holds while mitmproxy 12 briefly binds
its default address at start-up, and if anyone widens `listen_host` behind our back.
"""

from __future__ import annotations

from mitmproxy import connection

from cargo_vouch.config import is_loopback
from cargo_vouch.logs import get_logger

logger = get_logger(__name__)


class LoopbackClients:
    def client_connected(self, client: connection.Client) -> None:
        host = str(client.peername[0])
        if not is_loopback(host.removeprefix("::ffff:")):
            client.error = "cargo-vouch serves loopback clients only"
            logger.warning(f"refused a connection from {host}: loopback clients only")
