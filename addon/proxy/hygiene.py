"""Requests that could mean two things are refused before any token is attached.

mitmproxy forwards what it parsed, byte for byte: a bare CR in a header value, a `#` or an
encoded `?` in the target, dot segments, a Host that names another virtual host than the
one the tunnel was opened to. The registry, or whatever front end sits before it, may read
any of those differently from the way we classified the request — one request becomes two,
a fragment hides the path a touch was asked for, a vhost on the same front end gets the
token. So on a connection to a registry origin every request is checked first, and one
that is not plain is answered here (400, or 421 for another authority) and never forwarded:
it also never reaches the upstream connection that token-bearing requests share.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from mitmproxy import http

from cargo_vouch.config import ascii_number

#: Header names (RFC 9110 tokens), joined by single spaces: one C-speed check for all.
_NAMES = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+(?: [!#$%&'*+\-.^_`|~0-9A-Za-z]+)*")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: Control characters other than HTAB (CR, LF and NUL among them), and DEL.
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_CONTROL_TEXT = re.compile(r"[\x00-\x1f\x7f]")
#: What makes a target worth decoding: anything else is a plain path (Cargo's always are).
_UNUSUAL_TARGET = re.compile(rb"[#%\\\x00-\x20\x7f]|//|/\.")
#: Headers that make a server run a request as another method or on another path. Compared
#: with `_` read as `-`, as CGI-style servers do (X_HTTP_METHOD_OVERRIDE).
OVERRIDE_HEADERS = frozenset({
    b"x-http-method-override", b"x-http-method", b"x-method-override",
    b"x-original-url", b"x-rewrite-url", b"x-original-method",
})
#: A percent-escape of a character that needs none (RFC 3986 unreserved: letters, digits,
#: - . _ ~). Cargo never writes one; a front end that routes on the raw path and a server
#: that decodes it would read `/%77eb/` as two different paths, one outside every prefix.
_NEEDLESS_ESCAPE = re.compile(r"%(?:3[0-9]|[46][1-9A-Fa-f]|[57][0-9Aa]|2[DdEe]|5[Ff]|7[Ee])")
#: How often a path is percent-decoded to look for what a server decoding more than once sees.
_DECODE_ROUNDS = 3

Fields = tuple[tuple[bytes, bytes], ...]


#: Credentials of the client's own: never on a request that gets the registry's token.
CLIENT_CREDENTIALS = frozenset({b"authorization", b"cookie"})


@dataclass(frozen=True)
class Clean:
    """The header fields to send on (override headers dropped), and whether the client sent
    credentials of its own (Authorization, Cookie), which a routed request never passes on."""

    fields: Fields
    has_credentials: bool


@dataclass(frozen=True)
class Unclean:
    """Why a request is refused; `reason` never quotes a header value (it may be a token)."""

    status: int
    reason: str


def check(request: http.Request, target: tuple[str, int] | None) -> Unclean | Clean:
    """What to send on of a plain request to `target`, the (host, port) the tunnel was
    opened to, or why it is refused. `target` is None for an https request that did not
    come through CONNECT. One pass over the raw fields: this runs on every registry request."""
    if target is None:
        return Unclean(421, "an https request to a registry must come through CONNECT")
    if not _TOKEN.fullmatch(request.data.method):
        # mitmproxy 11 takes an HTTP/2 :method as given and writes it into the request line.
        return Unclean(400, "the request method is not an HTTP token")
    fields = request.headers.fields
    names = b" ".join(name for name, _ in fields)
    if fields and (not _NAMES.fullmatch(names) or names.count(b" ") != len(fields) - 1):
        bad = next(name for name, _ in fields if not _TOKEN.fullmatch(name))
        return Unclean(400, f"header name {_shown(bad)} is not an HTTP token")
    if _CONTROL.search(b"\t".join(value for _, value in fields)):  # HTAB: allowed in values
        bad = next(name for name, value in fields if _CONTROL.search(value))
        return Unclean(400, f"header {_shown(bad)} holds a control character")
    hosts = []
    dropped = has_credentials = False
    lengths = codings = 0
    for name, value in fields:
        lower = name.lower()
        if lower == b"host":
            hosts.append(value)
        elif lower in CLIENT_CREDENTIALS:
            has_credentials = True
        elif lower == b"transfer-encoding":
            if value.strip().lower() != b"chunked":
                # Cargo sends chunked or nothing; codings before it are framed differently by servers.
                return Unclean(400, "Transfer-Encoding other than chunked")
            codings += 1
        elif lower == b"content-length":
            lengths += 1
        elif lower in OVERRIDE_HEADERS or (b"_" in lower and lower.replace(b"_", b"-") in OVERRIDE_HEADERS):
            dropped = True
    if lengths + codings > 1 or (codings and request.is_http2):
        # Where the body ends must have one reading: two lengths, or a length and chunked,
        # let a server find a second request in the body (mitmproxy checks this only while
        # validate_inbound_headers is on; HTTP/2 frames its own bodies and has no chunked).
        return Unclean(400, "the body's length is given more than once, or in a way HTTP/2 does not use")
    authority = _authority_problem(hosts, request, target)
    if authority is not None:
        return Unclean(421, authority)
    raw = request.data.path
    if _UNUSUAL_TARGET.search(raw):
        unusual = _target_problem(raw)
        if unusual is not None:
            return unusual
    elif not raw.startswith(b"/"):
        return Unclean(400, "the request path does not start with '/'")
    if dropped:
        fields = tuple((name, value) for name, value in fields if name.lower().replace(b"_", b"-") not in OVERRIDE_HEADERS)
    return Clean(fields, has_credentials)


def _authority_problem(hosts: list[bytes], request: http.Request, target: tuple[str, int]) -> str | None:
    """Host, `:authority` and an absolute-form target must all name the tunnel's own origin."""
    host, port = target
    if request.data.host.lower() != host.lower() or request.data.port != port:
        return "the request was rerouted away from its tunnel"
    if len(hosts) > 1:
        return "more than one Host header"
    if hosts and not request.data.authority:  # the usual case: one Host, the tunnel's own
        given = hosts[0].lower()
        name = host.lower().encode("latin-1")
        if given == name or given == b"%s:%d" % (name, port):
            return None
    named = [value.decode("latin-1") for value in (*hosts, request.data.authority) if value]
    if not named:
        return "no Host header"
    for value in named:
        if not _same_origin(value, target):
            return f"the request names {_shown(value.encode('latin-1'))}, but the connection is to {_origin(target)}"
    return None


def _same_origin(authority: str, target: tuple[str, int]) -> bool:
    """The same host name, and the same port where one is written. A name without a port
    (libgit2 sends `Host: localhost` for localhost:8443) selects the same virtual host:
    front ends route on the name. Brackets belong to an IPv6 literal and nothing else."""
    host, port = target
    if authority.startswith("["):
        name, sep, rest = authority[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")) or ":" not in name:
            return False
        port_text = rest[1:]
    else:
        name, sep, port_text = authority.rpartition(":")
        if not sep:
            name, port_text = authority, ""
        if not name or ":" in name or "[" in name or "]" in name:
            return False
    if port_text and ascii_number(port_text) != port:
        return False
    return name.lower() == host.strip("[]").lower()


def _target_problem(raw: bytes) -> Unclean | None:
    """The request target as sent, then its path as a server may decode it (only for a
    target with anything unusual in it: see _UNUSUAL_TARGET)."""
    if b"#" in raw:
        return Unclean(400, "the request target holds '#'")
    if b"%u" in raw or b"%U" in raw:
        return Unclean(400, "the request target holds a %u escape (which IIS decodes)")
    if _CONTROL.search(raw) or b" " in raw:
        return Unclean(400, "the request target holds a space or a control character")
    path = raw.split(b"?", 1)[0].decode("latin-1")
    if _NEEDLESS_ESCAPE.search(path):
        return Unclean(400, "the request path percent-encodes a character that needs no encoding")
    decoded = path
    for _ in range(_DECODE_ROUNDS):
        if "%" not in decoded:
            break
        decoded = unquote(decoded, encoding="latin-1")
    for char, what in (("?", "'?'"), ("#", "'#'"), ("\\", "a backslash")):
        if char in decoded:
            return Unclean(400, f"the request path, decoded, holds {what}")
    if _CONTROL_TEXT.search(decoded):
        return Unclean(400, "the request path, decoded, holds a control character")
    segments = decoded.split("/")
    if segments[0] != "":
        return Unclean(400, "the request path does not start with '/'")
    for index, segment in enumerate(segments[1:], start=1):
        bare = segment.split(";", 1)[0].strip()
        if bare and bare.strip(".") == "":
            return Unclean(400, "the request path holds a '.' or '..' segment")
        if not bare and index < len(segments) - 1:
            return Unclean(400, "the request path holds an empty segment")
    return None


def _origin(target: tuple[str, int]) -> str:
    host, port = target
    host = f"[{host}]" if ":" in host else host
    return host if port == 443 else f"{host}:{port}"


def _shown(raw: bytes) -> str:
    """A header name or authority fit for one log line: printable, short, quoted."""
    text = "".join(ch if " " < ch <= "~" else "?" for ch in raw.decode("latin-1"))
    return repr(text if len(text) <= 80 else text[:77] + "...")

