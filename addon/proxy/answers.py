"""Answers the proxy gives itself instead of forwarding a request Cargo would fail on.

Each must reach the user through whatever client asked: current Cargo prints the body of
a 403 but swallows that of a 401 on config.json; git and libgit2 print a smart-HTTP `ERR`
packet but no body at all. So the status and the framing follow the client's protocol.
"""

from __future__ import annotations

from mitmproxy import http

#: Not 401: Cargo would take that as "log in with cargo login" and drop our message.
REFUSED_STATUS = 403


def pkt_line(payload: bytes) -> bytes:
    return b"%04x" % (len(payload) + 4) + payload


def git_error_advertisement(message: str) -> http.Response:
    """A ref advertisement that is one `ERR` packet: git prints 'remote error: MESSAGE'."""
    body = pkt_line(b"# service=git-upload-pack\n") + b"0000" + pkt_line(b"ERR " + message.encode() + b"\n")
    return http.Response.make(
        200, body, {"Content-Type": "application/x-git-upload-pack-advertisement", "Cache-Control": "no-cache"}
    )


def plain_refusal(message: str, status: int = REFUSED_STATUS) -> http.Response:
    return http.Response.make(
        status, message + "\n", {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store"}
    )


def refusal_for(request: http.Request, message: str, status: int | None = None) -> http.Response:
    """git's ref advertisement gets an `ERR` packet; anything else a plain-text `status`."""
    if request.path.endswith("/info/refs?service=git-upload-pack"):
        return git_error_advertisement(message)
    return plain_refusal(message, REFUSED_STATUS if status is None else status)
