"""The per-run proxy credential of `cargo vouch run`: only CMD, which was given it, may use
the proxy (on systems where the proxy cannot tell which user a connection is from, this is
what keeps other local users out).

mitmproxy's `proxyauth` addon does this too, but it also brings LDAP and htpasswd support
whose imports cost `run` a tenth of a second on every CI job, and it compares passwords
with `==`. This is the single-user case only, compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import weakref

from mitmproxy import connection, http

REALM = "cargo-vouch"
HEADER = "Proxy-Authorization"


class ProxyCredential:
    def __init__(self, user: str, password: str) -> None:
        self._expected = f"{user}:{password}".encode()
        #: Connections whose CONNECT carried the credential: what is tunnelled through them is theirs.
        self._authenticated: weakref.WeakSet[connection.Client] = weakref.WeakSet()

    def http_connect(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error:
            return
        if self._check(flow):
            self._authenticated.add(flow.client_conn)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or flow.client_conn in self._authenticated:
            return
        self._check(flow)  # a plain-HTTP request sent to the proxy itself

    def _check(self, flow: http.HTTPFlow) -> bool:
        """Whether the request carries the credential; it is removed then, and without it
        the request is answered 407."""
        if hmac.compare_digest(basic_credential(flow.request.headers.get(HEADER, "")), self._expected):
            del flow.request.headers[HEADER]
            return True
        flow.response = http.Response.make(
            407,
            b"cargo-vouch: proxy authentication required (the credential is in CARGO_HTTP_PROXY under 'cargo vouch run')\n",
            {"Proxy-Authenticate": f'Basic realm="{REALM}"', "Content-Type": "text/plain"},
        )
        return False


def basic_credential(value: str) -> bytes:
    """`user:password` from a Basic header value; b"" when it is anything else."""
    scheme, _, encoded = value.strip().partition(" ")
    if scheme.lower() != "basic":
        return b""
    try:
        return base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return b""
