"""What the addon's parts share: the registries, their providers, the token cache.

Rebuilt whole from each valid config, so a reload never mixes old and new registries.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from addon.config import VouchConfig, registry_hosts
from addon.index_config import IndexConfigError, fetch_git_config, fetch_sparse_config
from addon.matching import RegistryRoutes, Router
from addon.protocol import ProviderError
from addon.providers import Provider, TokenQuery, provider_for
from addon.token_cache import IssuedToken, TokenCache

logger = logging.getLogger("cargo-vouch")


class NoToken(Exception):
    """The provider gave no token; the message is the line the user sees in Cargo's output."""


class VouchState:
    def __init__(self) -> None:
        self.config: VouchConfig | None = None
        self.router = Router([])
        self.providers: dict[str, Provider] = {}
        self.cache = TokenCache()
        #: The roots trusted for registry TLS: the system's plus `upstream-ca`.
        self.upstream_bundle = Path()
        self._learning: dict[str, asyncio.Task[None]] = {}

    def apply(self, config: VouchConfig, upstream_bundle: Path) -> None:
        registries = list(config.registries.values())
        self.config = config
        self.router = Router(registries)
        self.providers = {r.name: provider_for(r, config.proxy.upstream_ca) for r in registries}
        self.cache = TokenCache()
        self.upstream_bundle = upstream_bundle
        self._learning = {}

    async def token(self, registry: RegistryRoutes, query: TokenQuery) -> IssuedToken:
        return await self.cache.get(registry.name, self.providers[registry.name], query)

    async def token_or_refusal(self, registry: RegistryRoutes, query: TokenQuery) -> IssuedToken:
        """The token for a request, or NoToken with what to tell the user instead."""
        provider = self.providers[registry.name]
        try:
            return await self.token(registry, query)
        except ProviderError as exc:
            message = f"cargo-vouch: no token for registry '{registry.name}' from {provider.description}: {exc.message}"
            if exc.kind == "not-found" and provider.login_hint not in message:
                message += f" ({provider.login_hint})"
            raise NoToken(message) from None

    def authorization(self, registry: RegistryRoutes, issued: IssuedToken) -> str:
        return registry.config.token_prefix + issued.token.value

    def learn_all(self) -> None:
        """Start learning every registry's dl/api in the background, so that even a first
        request straight to a download host (on another origin, say) is recognised."""
        for registry in self.router.registries:
            self._learning_task(registry)

    async def ensure_learned(self, registry: RegistryRoutes) -> None:
        """Learn `dl`/`api` before a request that may need them; one attempt at a time."""
        if not registry.learned:
            await asyncio.shield(self._learning_task(registry))

    async def learn_origin(self, host: str, port: int) -> None:
        """Before deciding about a request to a registry origin that matched nothing."""
        waiting = [
            self.ensure_learned(r) for r in self.router.registries if (host.lower(), port) in r.origins()
        ]
        await asyncio.gather(*waiting)

    def _learning_task(self, registry: RegistryRoutes) -> asyncio.Task[None]:
        task = self._learning.get(registry.name)
        if task is None or (task.done() and not registry.learned):
            task = asyncio.ensure_future(self._learn(registry))
            self._learning[registry.name] = task
        return task

    async def _learn(self, registry: RegistryRoutes) -> None:
        config = registry.config
        fetch = fetch_sparse_config if config.is_sparse else fetch_git_config
        try:
            # A token of its own: a one-use token belongs to the request that asked for it.
            issued = await self.token(registry, TokenQuery())
            async with asyncio.timeout(config.provider_timeout):
                data = await fetch(config.index, self.authorization(registry, issued), self.upstream_bundle, config.provider_timeout)
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

    def learned_from(self, registry: RegistryRoutes, data: dict[str, object]) -> None:
        """Adopt config.json; report only what changed (Cargo fetches it on every run)."""
        before = (registry.learned, registry.dl, registry.api)
        problems = registry.learn(data)
        if before == (True, registry.dl, registry.api):
            return
        for problem in problems:
            logger.warning(f"{registry.name}: {problem}")
        assert self.config is not None
        for prefix in (registry.dl, registry.api):
            if prefix is not None and prefix.host not in registry_hosts(self.config):
                # The CA is name-constrained to configured hosts; Cargo would reject its leaf.
                logger.warning(
                    f"{registry.name}: config.json sends requests to {prefix.host}, which the CA does not cover; "
                    f"add \"{prefix}\" to prefixes in [registries.{registry.name}] and restart the proxy"
                )
        logger.info(
            f"{registry.name}: dl={registry.dl or '-'} api={registry.api or '-'} (from config.json)"
        )

    async def learning_settled(self) -> None:
        """Wait for learning in progress, so a dl host on another origin is recognised."""
        pending = [t for t in self._learning.values() if not t.done()]
        if pending:
            await asyncio.wait(pending)
