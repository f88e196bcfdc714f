"""The hosts a registry's config.json sends Cargo to, and which of them the cargo-vouch
config does not cover yet.

A `dl` or `api` on another host than the index's (crates.io's `static.`, Cloudsmith's
`dl.`) gets the token only once that host is in `prefixes`: the proxy never adopts a host
config.json names on its own. `setup` adds them, `doctor` reports what is missing. Both
read config.json as the proxy would: a sparse one straight from the registry with the
provider's token (in this process, never a child's), a git one through the running proxy.
"""

from __future__ import annotations

import asyncio
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cargo_vouch import paths
from cargo_vouch.ca.authority import system_roots
from cargo_vouch.config import ListenAddress, RegistryConfig
from cargo_vouch.index_config import IndexConfigError
from cargo_vouch.protocol import ProviderError, Read
from cargo_vouch.providers import provider_for
from cargo_vouch.providers.token_cache import TokenCache
from cargo_vouch.proxy.learning import fetch_git_config, fetch_sparse_config
from cargo_vouch.proxy.routing import RegistryRoutes, UrlPrefix, learned_prefix

#: setup and doctor wait this long at most for config.json (the provider's own timeout aside).
READ_TIMEOUT = 15.0


class Unreadable(Exception):
    """config.json could not be read; the message says why."""


@dataclass(frozen=True)
class Uncovered:
    """A `dl` or `api` on a host the config does not name, and the prefix that covers it."""

    key: str
    value: str
    prefix: str


def read_config_json(
    registry: RegistryConfig, upstream_ca: Path | None, listen: ListenAddress, hidden_env: frozenset[str] = frozenset()
) -> dict[str, object]:
    """The registry's config.json, or Unreadable."""
    try:
        if registry.is_sparse:
            return asyncio.run(_read_sparse(registry, upstream_ca, hidden_env))
        if not _listening(listen):
            raise Unreadable(f"a git index's config.json is read through the proxy, and nothing listens on {listen}")
        timeout = min(registry.provider_timeout, READ_TIMEOUT)
        return asyncio.run(fetch_git_config(registry.index, listen.url, paths.ca_cert_path(), timeout, hidden_env))
    except (IndexConfigError, ProviderError) as exc:
        raise Unreadable(getattr(exc, "message", None) or str(exc)) from None


async def _read_sparse(registry: RegistryConfig, upstream_ca: Path | None, hidden_env: frozenset[str]) -> dict[str, object]:
    issued = await TokenCache().get(registry.name, provider_for(registry, upstream_ca, hidden_env), Read())
    with tempfile.NamedTemporaryFile(prefix="cargo-vouch-roots-", suffix=".pem") as bundle:
        bundle.write(system_roots().read_bytes())
        if upstream_ca is not None:
            bundle.write(b"\n" + upstream_ca.read_bytes())
        bundle.flush()
        authorization = registry.token_prefix + issued.token.value
        timeout = min(registry.provider_timeout, READ_TIMEOUT)
        return await fetch_sparse_config(registry.index, authorization, Path(bundle.name), timeout)


def uncovered(registry: RegistryConfig, data: dict[str, object]) -> list[Uncovered]:
    """`dl` and `api` that name a host the registry's config does not cover."""
    configured = RegistryRoutes(registry).configured_origins()
    found = []
    for key in ("dl", "api"):
        value = data.get(key)
        if not isinstance(value, str):
            continue
        prefix = learned_prefix(value)
        if isinstance(prefix, UrlPrefix) and prefix.origin not in configured:
            found.append(Uncovered(key, value, prefix_url(prefix)))
    return found


def prefix_url(prefix: UrlPrefix) -> str:
    """As a user writes it in `prefixes`: no `:443`."""
    port = "" if prefix.port == 443 else f":{prefix.port}"
    return f"https://{prefix.host}{port}{prefix.path}"


def _listening(listen: ListenAddress) -> bool:
    try:
        with socket.create_connection((listen.host, listen.port), timeout=1.0):
            return True
    except OSError:
        return False
