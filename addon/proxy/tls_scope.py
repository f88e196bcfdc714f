"""Only registry connections are opened; every other TLS connection is a plain tunnel.

Cargo's proxy setting covers all its traffic (crates.io, git dependencies, …). Those
hosts keep their own certificates and never see our CA, and nothing of theirs is read.
"""

from __future__ import annotations

from mitmproxy import tls

from cargo_vouch.logs import get_logger, printable
from cargo_vouch.proxy.state import VouchState

logger = get_logger(__name__)


class TlsScope:
    def __init__(self, state: VouchState) -> None:
        self.state = state

    async def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        address = data.context.server.address
        if address is None:
            data.ignore_connection = True
            return
        host, port = address[0], address[1]
        sni = data.client_hello.sni
        # A ClientHello naming another host than the CONNECT target is not ours to open.
        if sni is not None and sni.lower() != host.lower():
            data.ignore_connection = True
            return
        data.ignore_connection = not await self.state.intercepts(host, port)
        if not data.ignore_connection and sni is None:
            # Clients send no SNI for an IP address; mitmproxy would then put its own
            # listening address into the leaf, which the CA may not sign for. The leaf
            # names the CONNECT target, and only that.
            data.context.client.sni = host

    def tls_failed_server(self, data: tls.TlsData) -> None:
        """A registry whose certificate the proxy does not trust: Cargo gets mitmproxy's 502
        page; the proxy's line says what to do about it."""
        address = data.context.server.address
        if address is None or not self.state.router.intercepts(address[0], address[1]):
            return
        config = self.state.config
        where = f" in {config.path}" if config is not None and config.path else ""
        logger.warning(
            f"{printable(str(address[0]))}:{address[1]}: TLS to the registry failed ({printable(str(data.conn.error))}); "
            f"if it uses a private CA, add that CA to [proxy] upstream-ca{where}"
        )
