"""Puts the registry's token on exactly the registry's requests, and takes it off the flow
as soon as it has gone upstream.

Injection happens in `requestheaders`: bodies stream through untouched (crate uploads
and git packs can be large), and a valid cached token costs no process and no await on
I/O. A publish, whose token request needs the crate's checksum from the end of its body,
is handed to the write relay (see write_relay.py), which streams it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from mitmproxy import http

from addon.answers import plain_refusal, refusal_for
from addon.index_config import (
    IndexConfigError,
    parse_index_config,
    without_auth_required,
)
from addon.matching import Match, Operation
from addon.providers import TokenQuery
from addon.publish_body import too_large_message
from addon.state import NoToken, VouchState
from addon.token_cache import IssuedToken
from addon.write_gate import WriteGate, WriteRefused
from addon.write_relay import WriteRelay

logger = logging.getLogger("cargo-vouch")

REDACTED = "<redacted by cargo-vouch>"
CONDITIONAL_HEADERS = ("If-None-Match", "If-Modified-Since")
#: The client's Authorization, and the headers some servers honour to run a POST as a PUT
#: or DELETE: never sent to a registry.
DROPPED_HEADERS = frozenset({b"authorization", b"x-http-method-override", b"x-http-method", b"x-method-override"})


@dataclass
class Authenticated:
    """A request that left with a token: enough to log it and to retire a refused token."""

    flow: http.HTTPFlow
    match: Match
    issued: IssuedToken
    started: float


def query_for(match: Match) -> TokenQuery:
    """The protocol fields Cargo sends for yank, unyank and owners (publish: see publish_query)."""
    return TokenQuery(match.operation.value, tuple(zip(("name", "vers"), match.crate, strict=False)))


def log_request(match: Match, method: str, path: str, issued: IssuedToken, outcome: str, started: float) -> None:
    """The one line per authenticated request: who, what, for how long, how it went."""
    left = issued.seconds_left(time.time())
    elapsed_ms = (time.monotonic() - started) * 1000
    logger.info(
        f"{match.registry.name} {method} {path} {match.operation.value} sub={issued.subject or '-'} "
        f"expires_in={'-' if left is None else f'{left}s'} -> {outcome} {elapsed_ms:.0f}ms"
    )


class TokenInjector:
    def __init__(self, state: VouchState, gate: WriteGate) -> None:
        self.state = state
        self.gate = gate
        self.relay = WriteRelay(state, gate, log_request)
        self._authenticated: dict[str, Authenticated] = {}
        self._config_json: set[str] = set()

    async def _match(self, request: http.Request) -> Match | None:
        args = (request.scheme, request.host, request.port, request.path, request.method)
        found = self.state.router.match(*args)
        if found is None and self.state.router.intercepts(request.host, request.port):
            # A download before any index request (Cargo 1.65 with a complete lock file
            # and a local index copy): dl/api must be known before deciding.
            await self.state.learn_origin(request.host, request.port)
            found = self.state.router.match(*args)
        return found

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        match = await self._match(flow.request)
        if match is None:
            return
        # The client's own Authorization (a placeholder, a static token) never goes upstream,
        # nor a header that would make the server read the request as another method.
        # One pass over the raw fields: this runs on every registry request.
        fields = flow.request.headers.fields
        if any(name.lower() in DROPPED_HEADERS for name, _ in fields):
            flow.request.headers.fields = tuple((k, v) for k, v in fields if k.lower() not in DROPPED_HEADERS)
        try:
            await self._requestheaders(flow, match)
        except Exception as exc:  # noqa: BLE001 - mitmproxy would log it and forward the request
            self._fail_closed(flow, match, exc)

    async def _requestheaders(self, flow: http.HTTPFlow, match: Match) -> None:
        registry = match.registry
        if match.operation is Operation.UNRECOGNISED:
            self._refuse(
                flow,
                match,
                f"cargo-vouch: {flow.request.method} {flow.request.path} to registry '{registry.name}' is not a "
                "request Cargo makes (neither a read nor publish, yank, unyank or owners); refused",
            )
            return
        if match.operation.is_write and not registry.config.allow_publish:
            self._refuse(
                flow,
                match,
                f"cargo-vouch: {match.operation.value} to registry '{registry.name}' is refused: "
                f"set allow-publish = true in [registries.{registry.name}] of the cargo-vouch config to allow it",
            )
            return
        if match.operation is Operation.PUBLISH:
            size = flow.request.headers.get("Content-Length", "")
            limit = registry.config.max_publish_size
            if size.isdigit() and int(size) > limit:
                flow.response = plain_refusal(too_large_message(registry.name, limit), status=413)
                logger.warning(f"{registry.name} PUT {flow.request.path}: publish of {size} bytes refused (413)")
                return
            await self.relay.divert(flow, match)
            return
        if match.operation is Operation.OWNERS and flow.request.method != "GET" and registry.config.touch:
            await self.relay.divert(flow, match)  # the touch names the users, from the body
            return
        if match.operation.is_write:
            try:
                await self.gate.confirm(match, flow.request.method)
            except WriteRefused as exc:
                self._refuse(flow, match, str(exc))
                return
        is_config_json = registry.config.is_sparse and flow.request.path == registry.index.path + "config.json"
        if is_config_json:
            # Always see config.json's body: we learn dl/api from it and rewrite it.
            for name in CONDITIONAL_HEADERS:
                flow.request.headers.pop(name, None)
            self._config_json.add(flow.id)
        await self._authorize(flow, match, query_for(match))
        if flow.response is not None:
            return
        if match.is_index and not is_config_json:
            await self.state.ensure_learned(registry)
        flow.request.stream = True

    def _fail_closed(self, flow: http.HTTPFlow, match: Match, exc: Exception) -> None:
        """An unexpected error answers the request: mitmproxy would otherwise log the error
        and send the request on, without our token. Only the exception's type is named, as
        its text may quote a token."""
        flow.request.headers.pop("Authorization", None)
        self._authenticated.pop(flow.id, None)
        message = (
            f"cargo-vouch: internal error ({type(exc).__name__}) on a request for registry "
            f"'{match.registry.name}'; nothing was sent to the registry"
        )
        self._refuse(flow, match, message, level=logging.ERROR)

    def _refuse(self, flow: http.HTTPFlow, match: Match, message: str, level: int = logging.WARNING) -> None:
        """Answer the request ourselves, in a form its client prints, and log the same line."""
        flow.response = refusal_for(flow.request, message)
        logger.log(level, f"{match.registry.name} {flow.request.method} {flow.request.path}: {message}")

    async def _authorize(self, flow: http.HTTPFlow, match: Match, query: TokenQuery) -> None:
        registry = match.registry
        try:
            issued = await self.state.token_or_refusal(registry, query)
        except NoToken as exc:
            self._refuse(flow, match, str(exc))
            return
        flow.request.headers["Authorization"] = self.state.authorization(registry, issued)
        self._authenticated[flow.id] = Authenticated(flow, match, issued, time.monotonic())

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        done = self._authenticated.get(flow.id)
        if done is None or flow.response is None:
            return
        self._redact(flow)
        if flow.response.status_code in (401, 403):
            self.state.cache.refused(done.match.registry.name, done.issued.token.value)
        if flow.id not in self._config_json:
            flow.response.stream = True

    def response(self, flow: http.HTTPFlow) -> None:
        is_config_json = flow.id in self._config_json
        self._config_json.discard(flow.id)
        done = self._authenticated.pop(flow.id, None)
        if done is None or flow.response is None:
            return
        if is_config_json and flow.response.status_code == 200:
            self._rewrite_config_json(flow, done)
        self._log(flow, done, str(flow.response.status_code))

    def error(self, flow: http.HTTPFlow) -> None:
        self.relay.forget(flow)
        self._config_json.discard(flow.id)
        done = self._authenticated.pop(flow.id, None)
        if done is not None:
            self._redact(flow)
            self._log(flow, done, f"error: {flow.error.msg if flow.error else 'unknown'}")

    async def done(self) -> None:
        """Shutting down: no flow that is saved on the way out may still hold a token."""
        for done in self._authenticated.values():
            self._redact(done.flow)
        self._authenticated.clear()
        await self.relay.stop()

    def _redact(self, flow: http.HTTPFlow) -> None:
        if "Authorization" in flow.request.headers:
            flow.request.headers["Authorization"] = REDACTED

    def _rewrite_config_json(self, flow: http.HTTPFlow, done: Authenticated) -> None:
        assert flow.response is not None
        body = flow.response.get_content(strict=False) or b""
        registry = done.match.registry
        try:
            data = parse_index_config(body, registry.name)
        except IndexConfigError as exc:
            logger.warning(str(exc))
            return
        self.state.learned_from(registry, data)
        flow.response.set_content(without_auth_required(data))
        flow.response.headers.pop("ETag", None)

    def _log(self, flow: http.HTTPFlow, done: Authenticated, outcome: str) -> None:
        log_request(done.match, flow.request.method, flow.request.path, done.issued, outcome, done.started)
