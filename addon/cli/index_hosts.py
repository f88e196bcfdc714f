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
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cargo_vouch import paths
from cargo_vouch.ca.authority import system_roots
from cargo_vouch.cli import listening
from cargo_vouch.config import ListenAddress, RegistryConfig, https_url_problem
from cargo_vouch.index_config import IndexConfigError
from cargo_vouch.protocol import ProviderError, Read
from cargo_vouch.providers import provider_for
from cargo_vouch.providers.token_cache import TokenCache
from cargo_vouch.proxy.learning import fetch_git_config, fetch_sparse_config
from cargo_vouch.proxy.routing import RegistryRoutes, UrlPrefix, learned_prefix, overlap

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
    """The registry's config.json, or Unreadable. Only for a registry of the cargo-vouch
    config: the provider's token goes to its index, and only over https."""
    problem = https_url_problem(registry.index_http_url)
    if problem is not None:
        raise Unreadable(f"no token is sent to its index: {problem}")
    try:
        if registry.is_sparse:
            return asyncio.run(_read_sparse(registry, upstream_ca, hidden_env))
        found = listening.probe(listen, timeout=1.0)
        if not found.reachable:
            raise Unreadable(f"a git index's config.json is read through the proxy, and nothing listens on {listen}")
        if found.foreign:
            raise Unreadable(f"a git index's config.json is read through the proxy, and {found.describe(listen)}")
        if found.unknown:
            raise Unreadable(f"a git index's config.json is read through the proxy, and who holds {listen} cannot be told")
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


def uncovered(
    registry: RegistryConfig, data: dict[str, object], others: Iterable[RegistryConfig] = ()
) -> tuple[list[Uncovered], list[str]]:
    """`dl` and `api` that name a host the registry's config does not cover, and why any
    other such host cannot be added (a prefix the config could not load, or one over
    another registry's index: its requests would then carry this registry's token)."""
    configured = RegistryRoutes(registry).configured_origins()
    foreign = [UrlPrefix.parse(other.index_http_url) for other in others if other.name != registry.name]
    found: list[Uncovered] = []
    problems: list[str] = []
    for key in ("dl", "api"):
        value = data.get(key)
        if not isinstance(value, str):
            continue
        prefix = learned_prefix(value)
        if not isinstance(prefix, UrlPrefix):
            continue
        written = prefix_url(prefix)
        if written is None:
            problems.append(f"config.json {key} = {value!r} names a host that cannot be written as a prefix")
            continue
        # Checked as it would be written: `ｔｅａｍ.corp.example` is written `team.corp.example`.
        prefix = UrlPrefix.parse(written)
        if prefix.origin in configured:
            continue
        if any(overlap(prefix, index) for index in foreign):
            problems.append(f"config.json {key} = {value!r} overlaps another registry's index; not added")
        else:
            found.append(Uncovered(key, value, written))
    return found, problems


def prefix_url(prefix: UrlPrefix) -> str | None:
    """As a user writes it in `prefixes` (no `:443`, an IPv6 address in brackets, a host
    name in its ASCII form), or None if the config would not accept it."""
    host = prefix.host
    if ":" in host:
        host = f"[{host}]"
    elif not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    port = "" if prefix.port == 443 else f":{prefix.port}"
    url = f"https://{host}{port}{prefix.path}"
    return None if https_url_problem(url) else url
