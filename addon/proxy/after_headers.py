"""Nothing reaches a registry origin after a request's checked headers that the checks did
not see: no trailers, and no body behind an HTTP/2 read that declared none.

Trailers are header fields sent after the body; HTTP/2 lets any request end with them.
The request checks (hygiene.py) read the header fields, before the token is added and the
headers leave; trailers come later, and mitmproxy forwards them after the `request` hook.
So behind a read that carries the token, a client could send upstream what hygiene
refuses in headers: a method override, a second Authorization, a rewritten URL, and on
mitmproxy 11 CR/LF. Cargo, git and curl never send request trailers and none of them
reads response trailers, so on a registry origin neither is forwarded.

A body behind an HTTP/2 GET or HEAD without Content-Length has no length an HTTP/1.1
server could read: should the registry's next connection speak HTTP/1.1 (a rollout, a
load balancer over mixed backends), mitmproxy would write those bytes raw after the
request head, a second request the checks never saw. Such a read's body is never
forwarded (`RefusedBody`), and a read that had one is cut off.

A request with trailers whose headers are still here is answered 400. One whose headers
went upstream already (a streamed request: every request that carries a token) loses its
trailers and is killed, so the client gets no answer; its upstream request ends as it was
checked, without them. A response loses its trailers: a registry's Set-Cookie there would
open a session for the build, as in headers (see inject.SESSION_HEADERS).
"""

from __future__ import annotations

from mitmproxy import http

from cargo_vouch.logs import get_logger, printable, request_text
from cargo_vouch.proxy.answers import plain_refusal
from cargo_vouch.proxy.state import VouchState

logger = get_logger(__name__)

REFUSED = "cargo-vouch: refused: a request with trailers (header fields after the body), which Cargo and git never send"
CUT_OFF = ("cargo-vouch: refused: a request with trailers (header fields after the body), which Cargo and git never "
           "send; its headers had gone upstream, so it went on without them and its answer was withheld")


BODY_CUT_OFF = ("cargo-vouch: refused: a body behind an HTTP/2 read that declared none, which Cargo never sends; "
                "its headers had gone upstream, the body did not, and its answer was withheld")


#: Methods Cargo and git send without a body.
BODILESS = frozenset({"GET", "HEAD"})


class RefusedBody:
    """mitmproxy's request stream callable for a read that declared no body: it forwards
    none, and remembers whether the client sent any."""

    def __init__(self) -> None:
        self.seen = False

    def __call__(self, chunk: bytes) -> bytes:
        if chunk:
            self.seen = True
        return b""


def refuse_undeclared_body(request: http.Request) -> None:
    """Set up before the headers leave: an HTTP/2 read without Content-Length streams
    through RefusedBody (HTTP/1.1 frames its own: no length is no body there)."""
    if request.is_http2 and request.method in BODILESS and "content-length" not in request.headers:
        request.stream = RefusedBody()


class AfterHeaders:
    def __init__(self, state: VouchState) -> None:
        self.state = state

    def request(self, flow: http.HTTPFlow) -> None:
        request = flow.request
        if flow.error or not flow.live:
            return
        # RefusedBody is set on registry origins only (inject.py).
        body_seen = isinstance(request.stream, RefusedBody) and request.stream.seen
        if not body_seen and not (request.trailers and self._on_registry_origin(request)):
            return
        request.trailers = None  # whatever follows, mitmproxy sends none upstream
        if request.stream:
            # Its headers went upstream, and the registry may even have answered already
            # (a response is no sign that the flow was answered here).
            flow.kill()
            message = BODY_CUT_OFF if body_seen else CUT_OFF
        elif flow.response is None:
            flow.response = plain_refusal(REFUSED, 400)
            message = REFUSED
        else:
            return  # answered here, before anything went upstream
        logger.warning(f"{printable(request.host)} {request_text(request.method, request.path)}: {message}")

    def response(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        if response is not None and response.trailers and self._on_registry_origin(flow.request):
            response.trailers = None

    def _on_registry_origin(self, request: http.Request) -> bool:
        return request.scheme == "https" and self.state.router.intercepts(request.host, request.port)
