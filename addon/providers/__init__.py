"""Token providers: what turns (registry, operation) into a token, by the registry's config.

`provider_for` picks one per registry, as Cargo reads `credential-provider`; the token
cache (`token_cache`) decides when to ask it.
"""

from __future__ import annotations

from pathlib import Path

from cargo_vouch.config import RegistryConfig
from cargo_vouch.protocol import Provider
from cargo_vouch.providers.builtin import CargoTokenProvider, TokenFromStdoutProvider
from cargo_vouch.providers.client_credentials import ClientCredentialsProvider
from cargo_vouch.providers.external import ExternalProvider


def provider_for(
    registry: RegistryConfig, upstream_ca: Path | None = None, hidden_env: frozenset[str] = frozenset()
) -> Provider:
    """`upstream_ca` is `[proxy] upstream-ca`: providers that speak HTTPS themselves
    trust what the proxy trusts for registries, the system's roots plus that bundle.
    `hidden_env` names the secret variables (VouchConfig.secret_variables) that the
    programs a provider runs do not get, beside Cargo's token variables."""
    if registry.client_credentials is not None:
        return ClientCredentialsProvider(registry, upstream_ca)
    argv = registry.credential_provider
    if argv[0] == "cargo:token":
        return CargoTokenProvider(registry)
    if argv[0] == "cargo:token-from-stdout":
        return TokenFromStdoutProvider(registry, argv[1:], hidden_env)
    return ExternalProvider(registry, argv, hidden_env)
