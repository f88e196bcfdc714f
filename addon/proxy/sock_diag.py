"""The owner of one TCP socket, asked of the kernel directly (Linux sock_diag netlink).

/proc/net/tcp lists every socket of the machine as text, and the kernel builds that text
anew on each read: milliseconds per read on a busy CI machine, for every connection the
proxy accepts. sock_diag looks up the one socket by its addresses and ports and answers
with its owner, as `ss` does, without privileges. peers.py falls back to /proc/net/tcp
where the kernel has no sock_diag.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLMSG_ERROR = 0x2
TCP_ESTABLISHED = 1
NO_COOKIE = 0xFFFFFFFF

#: struct nlmsghdr, then struct inet_diag_req_v2: family, protocol, ext, pad, states,
#: then struct inet_diag_sockid: sport, dport (big-endian), src[4], dst[4] (network
#: order), interface, cookie[2].
_HEADER = struct.Struct("=IHHII")
_REQUEST = struct.Struct("=BBBxI")
_SOCKID = struct.Struct(">HH16s16s")
_SOCKID_TAIL = struct.Struct("=III")
#: struct inet_diag_msg: family, state, timer, retrans, the sockid (48 bytes), expires,
#: rqueue, wqueue, uid, inode.
_MESSAGE = struct.Struct("=BBBB48sIIIII")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class Unsupported(Exception):
    """This kernel answers no sock_diag requests for TCP."""


def tcp_owner(local: tuple[Address, int], remote: tuple[Address, int]) -> int | None:
    """The uid owning the established TCP socket whose own end is `local` and whose other
    end is `remote`, or None if there is none. An IPv4 connection may have an IPv6 socket
    at its end (addresses ::ffff:a.b.c.d): both families are asked."""
    families = [socket.AF_INET, socket.AF_INET6] if local[0].version == 4 else [socket.AF_INET6]
    for family in families:
        owner = _ask(family, local, remote)
        if owner is not None:
            return owner
    return None


def _ask(family: int, local: tuple[Address, int], remote: tuple[Address, int]) -> int | None:
    request = _HEADER.size + _REQUEST.size + _SOCKID.size + _SOCKID_TAIL.size
    sequence = 1
    message = (
        _HEADER.pack(request, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, sequence, 0)
        + _REQUEST.pack(family, socket.IPPROTO_TCP, 0, 1 << TCP_ESTABLISHED)
        + _SOCKID.pack(local[1], remote[1], _packed(family, local[0]), _packed(family, remote[0]))
        + _SOCKID_TAIL.pack(0, NO_COOKIE, NO_COOKIE)
    )
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as link:
            link.settimeout(1.0)
            link.sendto(message, (0, 0))
            answer = link.recv(8192)
    except OSError as exc:
        raise Unsupported(str(exc)) from None
    if len(answer) < _HEADER.size:
        raise Unsupported("a short answer")
    length, kind, _, seq, _ = _HEADER.unpack_from(answer)
    if seq != sequence:
        raise Unsupported("an answer to another request")
    if kind == NLMSG_ERROR:
        (error,) = struct.unpack_from("=i", answer, _HEADER.size)
        if -error == errno.ENOENT:
            return None  # no such socket
        raise Unsupported(os.strerror(-error))
    if kind != SOCK_DIAG_BY_FAMILY or length < _HEADER.size + _MESSAGE.size:
        raise Unsupported("an answer of another kind")
    _, state, _, _, _, _, _, _, uid, _ = _MESSAGE.unpack_from(answer, _HEADER.size)
    return uid if state == TCP_ESTABLISHED else None


def _packed(family: int, address: Address) -> bytes:
    """16 bytes in network order: an IPv4 address in the first 4 for AF_INET, or as
    ::ffff:a.b.c.d for AF_INET6."""
    if family == socket.AF_INET:
        assert isinstance(address, ipaddress.IPv4Address)
        return address.packed + bytes(12)
    if isinstance(address, ipaddress.IPv4Address):
        return ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + address.packed).packed
    return address.packed
