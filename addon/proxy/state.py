"""What the addon's parts share: the registries, their providers, the token cache.

Rebuilt whole from each valid config, so a reload never mixes old and new registries. It
answers the three questions every registry request asks, each in one place: which
registry and operation is this (`route`, learning `dl`/`api` first when it must), which
token goes with it (`token_or_refusal`), and how did it go (`Authenticated.answered`, which
retires a refused token, and `.log`, the one line per request).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from mitmproxy import http

from cargo_vouch import children
from cargo_vouch.config import VouchConfig
from cargo_vouch.index_config import IndexConfigError
from cargo_vouch.logs import get_logger, printable, request_text
from cargo_vouch.protocol import Operation, Provider, ProviderError, Read
from cargo_vouch.providers import provider_for
from cargo_vouch.providers.token_cache import IssuedToken, TokenCache
from cargo_vouch.proxy.learning import fetch_git_config, fetch_sparse_config
from cargo_vouch.proxy.routing import FollowUps, RegistryRoutes, Route, Router, classify_operation

logger = get_logger(__name__)

#: The redirects curl follows, keeping `Authorization` when they stay on the same origin.
REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: What a follow-up may be: Cargo follows download redirects with GET. A POST (git's
#: upload-pack) or a write never rides on another request's redirect.
FOLLOW_UP_METHODS = frozenset({"GET", "HEAD"})


class NoToken(Exception):
    """The provider gave no token; the message is the line the user sees in Cargo's output."""


@dataclass
class Authenticated:
    """A request that left with a token: what its log line needs, and what to retire if the
    registry refuses the token."""

    state: VouchState
    route: Route
    operation: Operation
    issued: IssuedToken
    method: str
    path: str
    started: float = field(default_factory=time.monotonic)

    def answered(self, status: int) -> None:
        """The registry's status is known: a token it refused (401/403) is never offered
        again, and the first refusal of it says why that may be: Cargo would only say the
        registry wants a credential provider, which it has."""
        if status in (401, 403):
            registry = self.route.registry
            if self.state.cache.refused(registry.name, self.issued.token.value):
                provider = self.state.providers[registry.name].description
                logger.warning(
                    f"{registry.name}: the registry answered {status} to the token from {provider} "
                    f"({request_text(self.method, self.path)}); check that the provider's token is for "
                    f"this registry, and token-prefix ({registry.config.token_prefix.strip() or 'none'}) in the "
                    f"cargo-vouch config"
                )

    def log(self, outcome: str) -> None:
        """The one line per authenticated request: who, what, for how long, how it went."""
        left = self.issued.seconds_left(time.time())
        elapsed_ms = (time.monotonic() - self.started) * 1000
        logger.info(
            f"{self.route.registry.name} {request_text(self.method, self.path)} {self.operation.kind} "
            f"sub={printable(self.issued.subject or '-', 80)} expires_in={'-' if left is None else f'{left}s'} "
            f"-> {outcome} {elapsed_ms:.0f}ms"
        )


class VouchState:
    def __init__(self) -> None:
        self.config: VouchConfig | None = None
        self.router = Router([])
        self.follow_ups = FollowUps()
        self.providers: dict[str, Provider] = {}
        self.cache = TokenCache()
        #: The roots trusted for registry TLS: the system's plus `upstream-ca`.
        self.upstream_bundle = Path()
        #: This proxy's own URL (with `run`'s credential) and the CA bundle Cargo trusts, for
        #: the git fetch that learns a git index's config.json through the proxy itself.
        self.own_proxy: str | None = None
        #: `user:password` clients must give the proxy (`run`'s per-run credential), if any.
        self.proxy_credential: str | None = None
        self.cainfo = Path()
        self._learning: dict[str, asyncio.Task[None]] = {}

    def apply(self, config: VouchConfig, upstream_bundle: Path, cainfo: Path | None = None) -> None:
        registries = list(config.registries.values())
        self.config = config
        self.router = Router(registries)
        self.follow_ups = FollowUps()
        self.providers = {
            r.name: provider_for(r, config.proxy.upstream_ca, config.secret_variables) for r in registries
        }
        self.cache = TokenCache()
        self.upstream_bundle = upstream_bundle
        self.cainfo = cainfo or Path()
        self._learning = {}

    # -- which registry, which operation --------------------------------------------------
    async def route(self, request: http.Request) -> Route | None:
        """The registry and operation of a request, or None when it is no registry's.

        A request to a registry's origin that matches nothing may be a download before any
        index request (Cargo 1.65 with a complete lock file and a local index copy): then
        `dl`/`api` are learned first, and the request matched again.
        """
        args = (request.scheme, request.host, request.port, request.path, request.method)
        found = self.router.match(*args)
        if found is None and self.router.intercepts(request.host, request.port):
            origin = (request.host.lower(), request.port)
            await self._learned(r for r in self.router.registries if origin in r.origins())
            found = self.router.match(*args)
        if found is None and self.follow_ups and request.method in FOLLOW_UP_METHODS:
            redirected_by = self.follow_ups.take(request.host, request.port, request.path)
            if redirected_by is not None:
                path = request.path.partition("?")[0]
                found = Route(redirected_by, classify_operation(path, request.method), is_index=False)
        return found

    def redirected(self, route: Route, request: http.Request, status: int, location: str | None) -> None:
        """An authenticated answer redirects: a follow-up to the same origin gets the token."""
        if status not in REDIRECTS or not location:
            return
        try:
            target = urlsplit(urljoin(request.url, location))
            port = target.port or 443
        except ValueError:  # `https://[`: no URL at all, so no follow-up
            return
        if target.scheme != "https" or (target.hostname or "") != request.host.lower() or port != request.port:
            return  # another origin (a CDN's presigned URL): never the token
        path = (target.path or "/") + (f"?{target.query}" if target.query else "")
        self.follow_ups.remember(route.registry, request.host, request.port, path)

    async def intercepts(self, host: str, port: int) -> bool:
        """Whether TLS to this origin is opened at all (everything else is tunnelled). An
        origin not known yet may be a `dl` or `api` host about to be learned."""
        if not self.router.intercepts(host, port):
            # Only what is under way: TLS to crates.io must not start a provider each time.
            await self._learned(self.router.registries, start=False)
        return self.router.intercepts(host, port)

    # -- tokens -----------------------------------------------------------------------------
    async def token_or_refusal(self, registry: RegistryRoutes, operation: Operation) -> IssuedToken:
        """The token for a request, or NoToken with what to tell the user instead."""
        provider = self.providers[registry.name]
        try:
            return await self.cache.get(registry.name, provider, operation)
        except ProviderError as exc:
            message = f"cargo-vouch: no token for registry '{registry.name}' from {provider.description}: {exc.message}"
            if exc.kind == "not-found" and provider.login_hint not in message:
                message += f" ({provider.login_hint})"
            raise NoToken(message) from None

    def authorization(self, registry: RegistryRoutes, issued: IssuedToken) -> str:
        return registry.config.token_prefix + issued.token.value

    # -- learning dl and api from config.json ----------------------------------------------
    def learn_all(self) -> None:
        """Start learning every registry's dl/api in the background, so that even a first
        request straight to a download host (on another origin, say) is recognised."""
        for registry in self.router.registries:
            self._learning_task(registry)

    async def stop(self) -> None:
        """Shutting down: learning ends, and no child process is left being made."""
        for task in self._learning.values():
            task.cancel()
        if self._learning:
            await asyncio.wait(self._learning.values(), timeout=2)
        await children.settle()

    def learn_soon(self, registry: RegistryRoutes) -> None:
        """Try again to learn `dl`/`api` if an earlier attempt failed, without waiting: an
        index request must not wait for learning, which may be fetching that very index."""
        if not registry.learned:
            self._learning_task(registry)

    async def _learned(self, registries: Iterable[RegistryRoutes], *, start: bool = True) -> None:
        """The one way to wait for learning: each registry's attempt is shared by all who
        wait. `start=False` waits only for attempts already under way."""
        waiting = []
        for registry in registries:
            if registry.learned:
                continue
            task = self._learning_task(registry) if start else self._learning.get(registry.name)
            if task is not None and not task.done():
                waiting.append(asyncio.shield(task))
        if waiting:
            await asyncio.gather(*waiting)

    def _learning_task(self, registry: RegistryRoutes) -> asyncio.Task[None]:
        task = self._learning.get(registry.name)
        if task is None or (task.done() and not registry.learned):
            task = asyncio.ensure_future(self._learn(registry))
            self._learning[registry.name] = task
        return task

    async def _learn(self, registry: RegistryRoutes) -> None:
        config = registry.config
        try:
            async with asyncio.timeout(config.provider_timeout):
                data = await self._fetch_config_json(registry)
        except (IndexConfigError, ProviderError) as exc:
            # Not learned: the next index request tries again. Downloads would get no token.
            logger.warning(f"{registry.name}: cannot read config.json yet ({exc}); dl/api requests get no token until it is read")
            return
        except TimeoutError:
            logger.warning(f"{registry.name}: reading config.json took over {config.provider_timeout:g} s; will retry")
            return
        except Exception as exc:  # noqa: BLE001 - a failed lookup must not take the proxy down
            logger.warning(f"{registry.name}: cannot read config.json ({type(exc).__name__}); will retry")
            return
        self.learned_from(registry, data)

    async def _fetch_config_json(self, registry: RegistryRoutes) -> dict[str, object]:
        config = registry.config
        if not config.is_sparse:
            if self.own_proxy is None:
                raise IndexConfigError("the proxy is not listening yet")
            hidden = self.config.secret_variables if self.config else frozenset()
            return await fetch_git_config(config.index, self.own_proxy, self.cainfo, config.provider_timeout, hidden)
        # A token of its own: a one-use token belongs to the request that asked for it.
        issued = await self.cache.get(registry.name, self.providers[registry.name], Read())
        return await fetch_sparse_config(
            config.index, self.authorization(registry, issued), self.upstream_bundle, config.provider_timeout
        )

    def learned_from(self, registry: RegistryRoutes, data: dict[str, object]) -> None:
        """Adopt config.json; report only what changed (Cargo fetches it on every run)."""
        before = (registry.learned, registry.dl, registry.api)
        problems = registry.learn(data)
        if before == (True, registry.dl, registry.api):
            return
        for problem in problems:
            logger.warning(f"{registry.name}: {problem}")
        logger.info(f"{registry.name}: dl={registry.dl or '-'} api={registry.api or '-'} (from config.json)")
