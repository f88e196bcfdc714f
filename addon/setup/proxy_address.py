"""The proxy address setup writes into Cargo's `http.proxy`."""

from __future__ import annotations

from addon import paths
from addon.config import parse_listen
from addon.setup.model import SetupError


def proxy_url(listen: str, source: str = "--listen") -> str:
    """`http://HOST:PORT` for Cargo's `http.proxy`; only loopback is allowed.

    The proxy holds registry tokens; listening beyond this machine would hand them out.
    """
    code = 2 if source == "--listen" else 1
    try:
        address = parse_listen(listen)
    except ValueError as exc:
        raise SetupError(f"{source} {listen!r}: {exc} (e.g. {paths.DEFAULT_LISTEN})", code) from None
    if address.port == 0:
        raise SetupError(f"{source} {listen!r}: Cargo needs a fixed port", code)
    return f"http://{address}"
