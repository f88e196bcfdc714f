"""Who listens where the proxy should: nobody, this user, or another local user.

Any local user can bind a free port. While the user's proxy is down (after a reboot, with
its terminal closed) another user may hold the address `setup` wrote into Cargo's and
git's config, and every CONNECT Cargo makes then goes to that user's process: TLS stays
verified end to end, so no token or content, but which hosts and crates, and the power to
stall them. So "something accepts connections" is not "the proxy is up".
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from cargo_vouch.config import ListenAddress
from cargo_vouch.proxy import peers


@dataclass(frozen=True)
class Listener:
    """What a connection to the proxy's address found."""

    reachable: bool
    #: Why nothing could be reached (an OS error's text); "" when reachable.
    reason: str = ""
    #: The uid holding the address, when the kernel says.
    owner: int | None = None

    @property
    def unknown(self) -> bool:
        """Reachable, on a system that knows sockets' owners, and still nobody found: the
        holder hid (closed each connection and its listener at once)."""
        return self.reachable and self.owner is None and peers.lookup_supported()

    @property
    def foreign(self) -> bool:
        """Held by another user than this one."""
        return self.owner is not None and self.owner != os.geteuid()

    def describe(self, listen: ListenAddress) -> str:
        return f"{listen} is held by another local user (uid {self.owner}), not by your proxy"


#: Connections tried before saying who holds the address cannot be told: a holder that
#: closes each connection (and its listener) at once can slip past one look.
ATTEMPTS = 3


def probe(listen: ListenAddress, timeout: float) -> Listener:
    found = _probe_once(listen, timeout)
    for _ in range(ATTEMPTS - 1):
        if not found.reachable or found.owner is not None or not peers.lookup_supported():
            return found
        again = _probe_once(listen, timeout)
        # A holder that answered, then closed its listener too, is one that hides: not "nothing".
        found = again if again.reachable else found
    return found


def _probe_once(listen: ListenAddress, timeout: float) -> Listener:
    try:
        with socket.create_connection((listen.host, listen.port), timeout=timeout) as connection:
            if not peers.lookup_supported():
                return Listener(True)
            server = connection.getpeername()
            owner = peers.server_owner(connection)
    except OSError as exc:
        return Listener(False, exc.strerror or type(exc).__name__)
    if owner is None:  # the server closed its end already: ask who listens there instead
        mine = os.geteuid()
        owners = peers.listening_owners(int(server[1]), str(server[0]))
        owner = next(iter(sorted(owners - {mine})), mine if mine in owners else None)
    return Listener(True, owner=owner)
