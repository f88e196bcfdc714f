"""Puts the registry's token on exactly the registry's requests, and takes it off the flow
as soon as it has gone upstream.

One request's path: `state.route` (which registry, which operation), `policy.decide` (what
to do with it), then the verdict carried out here: refused with a line Cargo prints, sent
to the write relay, or authorized — after a touch where the policy asks for one.

Injection happens in `requestheaders`: bodies stream through untouched (crate uploads
and git packs can be large), and a valid cached token costs no process and no await on
I/O. A publish, whose token request needs the crate's checksum from the end of its body,
is handed to the write relay (see write_relay.py), which streams it.
"""

from __future__ import annotations

import logging

from mitmproxy import http

from cargo_vouch.logs import get_logger, printable, request_text
from cargo_vouch.protocol import Operation, Write
from cargo_vouch.proxy import hygiene
from cargo_vouch.proxy.after_headers import refuse_undeclared_body
from cargo_vouch.proxy.answers import plain_refusal, refusal_for
from cargo_vouch.proxy.config_json import rewrite_config_json
from cargo_vouch.proxy.policy import Authorize, Divert, Refuse, decide
from cargo_vouch.proxy.routing import PublishUpload, Route
from cargo_vouch.proxy.state import Authenticated, NoToken, VouchState
from cargo_vouch.proxy.write_gate import WriteGate, WriteRefused
from cargo_vouch.proxy.write_relay import WriteRelay

logger = get_logger(__name__)

REDACTED = "<redacted by cargo-vouch>"
REDACTED_BYTES = REDACTED.encode()
CONDITIONAL_HEADERS = ("If-None-Match", "If-Modified-Since")
SESSION_HEADERS = ("Set-Cookie", "Set-Cookie2")


def tunnel_target(flow: http.HTTPFlow) -> tuple[str, int] | None:
    """The origin the client's CONNECT opened, which mitmproxy connects to; None when the
    https request did not come through a TLS tunnel (a plain-text client asking the proxy
    to speak TLS for it)."""
    address = flow.server_conn.address
    if not flow.client_conn.tls_established or address is None:
        return None
    return str(address[0]), int(address[1])


class TokenInjector:
    def __init__(self, state: VouchState, gate: WriteGate) -> None:
        self.state = state
        self.gate = gate
        self.relay = WriteRelay(state, gate)
        #: Flows that left with a token, by flow id, until their answer is logged.
        self._authenticated: dict[str, tuple[http.HTTPFlow, Authenticated]] = {}
        self._config_json: set[str] = set()

    @property
    def tracked_flows(self) -> int:
        """Flows the injector still holds state for; 0 once every flow has ended, so a
        long-running proxy does not grow with every request it served or refused."""
        return len(self._authenticated.keys() | self._config_json)

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return  # answered already (proxyauth's 407, a refused client) or failed
        request = flow.request
        if request.scheme != "https" or not self.state.router.intercepts(request.host, request.port):
            return
        try:
            await self._check_and_carry_out(flow)
        except Exception as exc:  # noqa: BLE001 - mitmproxy would log it and forward the request unchecked
            flow.request.headers.pop("Authorization", None)
            self._authenticated.pop(flow.id, None)
            self._answer(flow, request.host, 500, f"cargo-vouch: internal error ({type(exc).__name__}) checking "
                         "a request to a registry origin; nothing was sent", level=logging.ERROR)

    async def _check_and_carry_out(self, flow: http.HTTPFlow) -> None:
        request = flow.request
        # Every request on a registry origin, routed or not: they share the upstream
        # connection that token-bearing requests use, so none may be ambiguous.
        checked = hygiene.check(request, tunnel_target(flow))
        if isinstance(checked, hygiene.Unclean):
            self._answer(flow, request.host, checked.status, f"cargo-vouch: refused: {checked.reason}")
            return
        fields = checked.fields
        refuse_undeclared_body(request)
        route = await self.state.route(request)
        if route is not None and checked.has_credentials:
            # The client's own Authorization (a placeholder, a static token) and cookies never
            # go upstream with the registry's token.
            fields = tuple((name, value) for name, value in fields if name.lower() not in hygiene.CLIENT_CREDENTIALS)
        if fields is not request.headers.fields:
            request.headers.fields = fields
        if route is None:
            return
        try:
            await self._carry_out(flow, route)
        except Exception as exc:  # noqa: BLE001 - mitmproxy would log it and forward the request
            self._fail_closed(flow, route, exc)

    async def _carry_out(self, flow: http.HTTPFlow, route: Route) -> None:
        request = flow.request
        length = request.headers.get("Content-Length") if isinstance(route.operation, PublishUpload) else None
        verdict = decide(route, request.method, request.path, length)
        match verdict:
            case Refuse(message, status):
                self._refuse(flow, route, message, status=status)
            case Divert():
                await self.relay.divert(flow, route)
            case Authorize(operation, touch, config_json):
                if touch and isinstance(operation, Write) and not await self._touched(flow, route, operation):
                    return
                if config_json:
                    # Always see config.json's body, as sent: we learn dl/api from it and rewrite it.
                    for name in CONDITIONAL_HEADERS:
                        request.headers.pop(name, None)
                    request.headers["Accept-Encoding"] = "identity"
                    self._config_json.add(flow.id)
                if not await self._authorize(flow, route, operation):
                    return
                if route.is_index and not config_json:
                    self.state.learn_soon(route.registry)
                if not request.stream:  # bodies stream; a read's undeclared one goes nowhere
                    request.stream = True

    async def _touched(self, flow: http.HTTPFlow, route: Route, operation: Write) -> bool:
        from cargo_vouch.touch.challenge import WriteIntent  # python-fido2: only where touch is on

        try:
            await self.gate.confirm(route.registry, WriteIntent(route.registry.name, operation))
        except WriteRefused as exc:
            self._refuse(flow, route, str(exc))
            return False
        return True

    async def _authorize(self, flow: http.HTTPFlow, route: Route, operation: Operation) -> bool:
        registry = route.registry
        try:
            issued = await self.state.token_or_refusal(registry, operation)
        except NoToken as exc:
            self._refuse(flow, route, str(exc))
            return False
        # Appended to the raw fields: requestheaders has removed any Authorization already.
        authorization = self.state.authorization(registry, issued).encode("latin-1")
        flow.request.headers.fields = (*flow.request.headers.fields, (b"Authorization", authorization))
        sent = Authenticated(self.state, route, operation, issued, flow.request.method, flow.request.path)
        self._authenticated[flow.id] = (flow, sent)
        return True

    def _fail_closed(self, flow: http.HTTPFlow, route: Route, exc: Exception) -> None:
        """An unexpected error answers the request: mitmproxy would otherwise log the error
        and send the request on, without our token. Only the exception's type is named, as
        its text may quote a token."""
        flow.request.headers.pop("Authorization", None)
        self._authenticated.pop(flow.id, None)
        message = (
            f"cargo-vouch: internal error ({type(exc).__name__}) on a request for registry "
            f"'{route.registry.name}'; nothing was sent to the registry"
        )
        self._refuse(flow, route, message, level=logging.ERROR)

    def _refuse(self, flow: http.HTTPFlow, route: Route, message: str, status: int | None = None,
                level: int = logging.WARNING) -> None:
        """Answer the request ourselves, in a form its client prints, and log the same line."""
        flow.response = refusal_for(flow.request, message, status)
        logger.log(level, f"{route.registry.name} {request_text(flow.request.method, flow.request.path)}: {message}")

    def _answer(self, flow: http.HTTPFlow, where: str, status: int, message: str, level: int = logging.WARNING) -> None:
        """A request refused before it is routed: the line names the host, and the path only
        as printable text (it may hold what made it unclean)."""
        flow.response = plain_refusal(message, status)
        logger.log(level, f"{printable(where)} {request_text(flow.request.method, flow.request.path)}: {message}")

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        entry = self._authenticated.get(flow.id)
        response = flow.response
        if entry is None or response is None:
            return
        sent = entry[1]
        registry = sent.route.registry
        rewrites_config_json = flow.id in self._config_json and response.status_code == 200
        if not rewrites_config_json:
            response.stream = True  # first: whatever fails below, the body is never held whole
        try:
            self._redact(flow)
            # A session the registry opens for the token's holder is not the build's to keep.
            for name in SESSION_HEADERS:
                response.headers.pop(name, None)
            sent.answered(response.status_code)
            self.state.redirected(sent.route, flow.request, response.status_code, response.headers.get("Location"))
            if rewrites_config_json:
                rewrite_config_json(flow, registry.name, lambda data: self.state.learned_from(registry, data))
        except Exception as exc:  # noqa: BLE001 - mitmproxy would log it and pass the answer on unchecked
            flow.kill()
            logger.error(f"{registry.name} {request_text(flow.request.method, flow.request.path)}: "
                         f"internal error ({type(exc).__name__}) on the registry's answer; the connection was closed")

    def response(self, flow: http.HTTPFlow) -> None:
        self._config_json.discard(flow.id)
        entry = self._authenticated.pop(flow.id, None)
        if entry is None or flow.response is None:
            return
        entry[1].log(str(flow.response.status_code))

    def error(self, flow: http.HTTPFlow) -> None:
        self.relay.forget(flow)
        self._config_json.discard(flow.id)
        entry = self._authenticated.pop(flow.id, None)
        if entry is not None:
            self._redact(flow)
            entry[1].log(f"error: {flow.error.msg if flow.error else 'unknown'}")

    async def done(self) -> None:
        """Shutting down: no flow that is saved on the way out may still hold a token."""
        for flow, _ in self._authenticated.values():
            self._redact(flow)
        self._authenticated.clear()
        await self.relay.stop()
        await self.state.stop()

    def _redact(self, flow: http.HTTPFlow) -> None:
        fields = flow.request.headers.fields
        if any(name.lower() == b"authorization" for name, _ in fields):
            # The raw fields in one assignment: a third of the time of Headers' item setter.
            flow.request.headers.fields = tuple(
                (name, REDACTED_BYTES if name.lower() == b"authorization" else value) for name, value in fields
            )
