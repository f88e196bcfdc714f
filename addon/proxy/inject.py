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

from cargo_vouch.index_config import IndexConfigError, parse_index_config, without_auth_required
from cargo_vouch.logs import get_logger
from cargo_vouch.protocol import Operation, Write
from cargo_vouch.proxy.answers import refusal_for
from cargo_vouch.proxy.policy import Authorize, Divert, Refuse, decide
from cargo_vouch.proxy.routing import Route
from cargo_vouch.proxy.state import Authenticated, NoToken, VouchState
from cargo_vouch.proxy.write_gate import WriteGate, WriteRefused
from cargo_vouch.proxy.write_relay import WriteRelay

logger = get_logger(__name__)

REDACTED = "<redacted by cargo-vouch>"
CONDITIONAL_HEADERS = ("If-None-Match", "If-Modified-Since")
#: The client's Authorization, and the headers some servers honour to run a POST as a PUT
#: or DELETE: never sent to a registry.
DROPPED_HEADERS = frozenset({b"authorization", b"x-http-method-override", b"x-http-method", b"x-method-override"})


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
        route = await self.state.route(flow.request)
        if route is None:
            return
        # The client's own Authorization (a placeholder, a static token) never goes upstream,
        # nor a header that would make the server read the request as another method.
        # One pass over the raw fields: this runs on every registry request.
        fields = flow.request.headers.fields
        if any(name.lower() in DROPPED_HEADERS for name, _ in fields):
            flow.request.headers.fields = tuple((k, v) for k, v in fields if k.lower() not in DROPPED_HEADERS)
        try:
            await self._carry_out(flow, route)
        except Exception as exc:  # noqa: BLE001 - mitmproxy would log it and forward the request
            self._fail_closed(flow, route, exc)

    async def _carry_out(self, flow: http.HTTPFlow, route: Route) -> None:
        request = flow.request
        verdict = decide(route, request.method, request.path, request.headers.get("Content-Length"))
        match verdict:
            case Refuse(message, status):
                self._refuse(flow, route, message, status=status)
            case Divert():
                await self.relay.divert(flow, route)
            case Authorize(operation, touch, config_json):
                if touch and isinstance(operation, Write) and not await self._touched(flow, route, operation):
                    return
                if config_json:
                    # Always see config.json's body: we learn dl/api from it and rewrite it.
                    for name in CONDITIONAL_HEADERS:
                        request.headers.pop(name, None)
                    self._config_json.add(flow.id)
                if not await self._authorize(flow, route, operation):
                    return
                if route.is_index and not config_json:
                    await self.state.ensure_learned(route.registry)
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
        flow.request.headers["Authorization"] = self.state.authorization(registry, issued)
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
        logger.log(level, f"{route.registry.name} {flow.request.method} {flow.request.path}: {message}")

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        entry = self._authenticated.get(flow.id)
        if entry is None or flow.response is None:
            return
        self._redact(flow)
        entry[1].answered(flow.response.status_code)
        if flow.id not in self._config_json:
            flow.response.stream = True

    def response(self, flow: http.HTTPFlow) -> None:
        is_config_json = flow.id in self._config_json
        self._config_json.discard(flow.id)
        entry = self._authenticated.pop(flow.id, None)
        if entry is None or flow.response is None:
            return
        if is_config_json and flow.response.status_code == 200:
            self._rewrite_config_json(flow, entry[1].route)
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

    def _redact(self, flow: http.HTTPFlow) -> None:
        if "Authorization" in flow.request.headers:
            flow.request.headers["Authorization"] = REDACTED

    def _rewrite_config_json(self, flow: http.HTTPFlow, route: Route) -> None:
        assert flow.response is not None
        body = flow.response.get_content(strict=False) or b""
        registry = route.registry
        try:
            data = parse_index_config(body, registry.name)
        except IndexConfigError as exc:
            logger.warning(str(exc))
            return
        self.state.learned_from(registry, data)
        flow.response.set_content(without_auth_required(data))
        flow.response.headers.pop("ETag", None)
