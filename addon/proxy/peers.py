"""Which local user opened a TCP connection to us (Linux).

A TCP socket carries no credentials (SO_PEERCRED answers only for Unix sockets), but the
kernel knows every socket's owner: the client's socket is the one whose local address is
our peer and whose remote address is us. It is asked for that one socket (sock_diag.py);
where it cannot be, /proc/net/tcp and /proc/net/tcp6 list every socket with its owner.
An IPv4 client may hold an IPv6 socket (listed as ::ffff:a.b.c.d), so both families are
looked at and such addresses compared as IPv4.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path

from cargo_vouch.proxy import sock_diag
from cargo_vouch.proxy.sock_diag import Address

TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
_ESTABLISHED = "01"
_LISTEN = "0A"
#: Until the kernel says otherwise, sockets are looked up one at a time.
_sock_diag_works = True


def lookup_supported() -> bool:
    """Whether this system lists sockets with their owners (Linux with /proc)."""
    return TABLES[0].is_file()


#: /proc/self/uid_map of the initial user namespace, where every uid is itself.
IDENTITY_UID_MAP = ["0", "0", "4294967295"]


def unmapped_uid(uid_map: Path = Path("/proc/self/uid_map"), overflow: Path = Path("/proc/sys/kernel/overflowuid")) -> int | None:
    """The uid under which this user namespace shows every user it does not map (the
    kernel's overflow uid, 65534 unless set otherwise): a socket of any such user is listed
    as owned by it, so that owner says nothing. None in the initial namespace, which maps
    every uid."""
    try:
        if uid_map.read_text().split() == IDENTITY_UID_MAP:
            return None
    except OSError:
        return None  # no user namespaces here
    try:
        return int(overflow.read_text().strip())
    except (OSError, ValueError):
        return 65534


def socket_owner(peer: tuple[str, int], ours: tuple[str, int]) -> int | None:
    """The uid owning the client's end of the connection from `peer` to `ours`, or None
    when no single established socket matches (then nobody can be vouched for)."""
    want_local = (_plain(ipaddress.ip_address(peer[0].split("%")[0])), int(peer[1]))
    want_remote = (_plain(ipaddress.ip_address(ours[0].split("%")[0])), int(ours[1]))
    global _sock_diag_works
    if _sock_diag_works:
        try:
            return sock_diag.tcp_owner(want_local, want_remote)
        except sock_diag.Unsupported:
            _sock_diag_works = False
    return listed_owner(want_local, want_remote)


def server_owner(connection: socket.socket) -> int | None:
    """The uid owning the other end of our TCP `connection` to a local server: whoever
    listens there (an accepted socket belongs to its listener's owner). None when the
    kernel cannot say. Any local user can bind a free port, so a port the proxy should
    hold may be another user's."""
    server, ours = connection.getpeername()[:2], connection.getsockname()[:2]
    return socket_owner((str(server[0]), int(server[1])), (str(ours[0]), int(ours[1])))


def listening_owners(port: int, address: str | None = None) -> set[int]:
    """The uids of the sockets listening on TCP `port` (from /proc/net/tcp*), on `address`
    or on every address (0.0.0.0, ::), or on any address when none is given: who holds a
    port we could not bind, or reached."""
    wanted = None if address is None else _plain(ipaddress.ip_address(address.split("%")[0]))
    owners = set()
    for fields in _sockets(_LISTEN, port):
        local = _endpoint(fields[1])[0]
        if wanted is None or local == wanted or local.is_unspecified:
            owners.add(int(fields[7]))
    return owners


def listed_owner(want_local: tuple[Address, int], want_remote: tuple[Address, int]) -> int | None:
    """socket_owner from /proc/net/tcp*: every socket of the machine, read as text."""
    owners = {
        (int(fields[7]), fields[9])  # (uid, inode)
        for fields in _sockets(_ESTABLISHED, want_local[1])
        if _endpoint(fields[1]) == want_local and _endpoint(fields[2]) == want_remote
    }
    return next(iter(owners))[0] if len(owners) == 1 else None


def _sockets(state: str, local_port: int) -> Iterator[list[str]]:
    """The fields of each /proc/net/tcp* row in `state` whose local port is `local_port`."""
    port_hex = f":{local_port:04X}"
    for table in TABLES:
        try:
            lines = table.read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) >= 10 and fields[3] == state and fields[1].endswith(port_hex):
                yield fields


def _endpoint(text: str) -> tuple[Address, int]:
    """`0100007F:1F90` (IPv4 as one little-endian word) or 32 hex digits of IPv6 (four
    little-endian words), then the port in plain hex."""
    address_hex, port_hex = text.split(":")
    raw = bytes.fromhex(address_hex)
    if len(raw) == 4:
        address: Address = ipaddress.IPv4Address(raw[::-1])
    else:
        address = ipaddress.IPv6Address(b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)))
    return _plain(address), int(port_hex, 16)


def _plain(address: Address) -> Address:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
