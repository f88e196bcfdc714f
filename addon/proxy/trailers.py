"""No HTTP trailers to or from a registry origin.

Trailers are header fields sent after the body; HTTP/2 lets any request end with them.
The request checks (hygiene.py) read the header fields, before the token is added and the
headers leave; trailers come later, and mitmproxy forwards them after the `request` hook.
So behind a read that carries the token, a client could send upstream what hygiene
refuses in headers: a method override, a second Authorization, a rewritten URL, and on
mitmproxy 11 CR/LF. Cargo, git and curl never send request trailers and none of them
reads response trailers, so on a registry origin neither is forwarded.

A request with trailers whose headers are still here is answered 400. One whose headers
went upstream already (a streamed request: every request that carries a token) loses its
trailers and is killed, so the client gets no answer; its upstream request ends as it was
checked, without them. A response loses its trailers: a registry's Set-Cookie there would
open a session for the build, as in headers (see inject.SESSION_HEADERS).
"""

from __future__ import annotations

from mitmproxy import http

from cargo_vouch.logs import get_logger, printable
from cargo_vouch.proxy.answers import plain_refusal
from cargo_vouch.proxy.state import VouchState

logger = get_logger(__name__)

REFUSED = "cargo-vouch: refused: a request with trailers (header fields after the body), which Cargo and git never send"
CUT_OFF = ("cargo-vouch: refused: a request with trailers (header fields after the body), which Cargo and git never "
           "send; its headers had gone upstream, so it went on without them and its answer was withheld")


class NoTrailers:
    def __init__(self, state: VouchState) -> None:
        self.state = state

    def request(self, flow: http.HTTPFlow) -> None:
        request = flow.request
        if not request.trailers or flow.error or not flow.live:
            return
        if not self._on_registry_origin(request):
            return
        request.trailers = None  # whatever follows, mitmproxy sends none upstream
        if request.stream:
            # Its headers went upstream, and the registry may even have answered already
            # (a response is no sign that the flow was answered here).
            flow.kill()
            message = CUT_OFF
        elif flow.response is None:
            flow.response = plain_refusal(REFUSED, 400)
            message = REFUSED
        else:
            return  # answered here, before anything went upstream
        logger.warning(f"{printable(request.host)} {printable(request.method, 20)} {printable(request.path)}: {message}")

    def response(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        if response is not None and response.trailers and self._on_registry_origin(flow.request):
            response.trailers = None

    def _on_registry_origin(self, request: http.Request) -> bool:
        return request.scheme == "https" and self.state.router.intercepts(request.host, request.port)
