"""Credential providers, run the way Cargo runs them.

Each provider turns (registry, operation) into a `Token` or raises `ProviderError`.
They run as child processes under asyncio so the proxy keeps serving while one works,
and every wait is bounded: a provider that hangs is killed and reported, not waited on.
"""

from __future__ import annotations

import asyncio
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from addon.cargo_config import env_name
from addon.children import Child, spawn
from addon.client_credentials import ClientCredentialsProvider
from addon.config import RegistryConfig
from addon.protocol import (
    CredentialRequest,
    ProtocolError,
    ProviderError,
    RegistryInfo,
    Session,
    Token,
    parse_hello,
    parse_response,
)


@dataclass(frozen=True)
class TokenQuery:
    """What one request needs a token for: the operation and its protocol fields."""

    operation: str = "read"
    fields: tuple[tuple[str, str], ...] = ()


class Provider(Protocol):
    #: Shown in error messages and `doctor`.
    description: str
    #: What to tell the user when the provider has no credential.
    login_hint: str

    async def get(self, query: TokenQuery) -> Token: ...


def provider_for(registry: RegistryConfig, upstream_ca: Path | None = None) -> Provider:
    """`upstream_ca` is `[proxy] upstream-ca`: providers that speak HTTPS themselves
    trust what the proxy trusts for registries, the system's roots plus that bundle."""
    if registry.client_credentials is not None:
        return ClientCredentialsProvider(registry, upstream_ca)
    argv = registry.credential_provider
    if argv[0] == "cargo:token":
        return CargoTokenProvider(registry)
    if argv[0] == "cargo:token-from-stdout":
        return TokenFromStdoutProvider(registry, argv[1:])
    return ExternalProvider(registry, argv)


class ExternalProvider:
    """A protocol-v1 provider such as `vouch credential cargo`: argv + `--cargo-plugin`."""

    login_hint = "run 'vouch login'"

    def __init__(self, registry: RegistryConfig, argv: tuple[str, ...]) -> None:
        self.registry = registry
        self.argv = (*argv, "--cargo-plugin")
        self.description = " ".join(argv)

    async def get(self, query: TokenQuery) -> Token:
        request = CredentialRequest(
            registry=RegistryInfo(self.registry.index, self.registry.name),
            operation=query.operation,
            operation_fields=dict(query.fields),
        )
        try:
            async with spawn(self.argv, stdin=True, echo_prefix=f"[{self.argv[0]}] ") as child:
                return await asyncio.wait_for(self._exchange(child, request), self.registry.provider_timeout)
        except TimeoutError:  # before OSError, of which it is a subclass
            raise ProviderError(
                "other",
                f"`{self.description}` did not answer within {self.registry.provider_timeout:g} s",
            ) from None
        except OSError as exc:
            raise ProviderError("other", f"cannot start `{self.description}`: {exc.strerror or exc}") from None

    async def _exchange(self, child: Child, request: CredentialRequest) -> Token:
        stdin, stdout = child.process.stdin, child.process.stdout
        assert stdin and stdout
        try:
            parse_hello(await self._read_line(child))
            stdin.write(request.to_line())
            await stdin.drain()
            token = parse_response(await self._read_line(child))
        except ProtocolError as exc:
            raise ProviderError("other", f"`{self.description}` broke the protocol: {exc}") from None
        except (BrokenPipeError, ConnectionResetError):
            raise ProviderError("other", await self._crash_message(child)) from None
        stdin.close()  # Cargo's signal that no other request follows
        await child.process.wait()
        return token

    async def _read_line(self, child: Child) -> bytes:
        assert child.process.stdout
        line = await child.process.stdout.readline()
        if not line:
            raise ProviderError("other", await self._crash_message(child))
        return line

    async def _crash_message(self, child: Child) -> str:
        status, last = await child.exit_detail()
        detail = f": {last}" if last else ""
        return f"`{self.description}` exited with status {status} before answering{detail}"


class CargoTokenProvider:
    """`cargo:token`: the environment variable, then `$CARGO_HOME/credentials.toml`."""

    def __init__(self, registry: RegistryConfig) -> None:
        self.registry = registry
        self.env_var = env_name(f"registries.{registry.name}.token")
        self.description = "cargo:token"
        self.login_hint = f"set {self.env_var} or run 'cargo login --registry {registry.name}'"

    async def get(self, query: TokenQuery) -> Token:
        value = os.environ.get(self.env_var)
        if value:
            return Token(value, Session())
        home = Path(os.environ.get("CARGO_HOME") or Path.home() / ".cargo")
        for path in (home / "credentials.toml", home / "credentials"):
            if not path.exists():
                continue
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise ProviderError("other", f"{path}: cannot read credentials: {exc}") from None
            token = data.get("registries", {}).get(self.registry.name, {}).get("token")
            if isinstance(token, str) and token:
                return Token(token, Session())
            break
        raise ProviderError("not-found", f"no token found for registry `{self.registry.name}`")


class TokenFromStdoutProvider:
    """`cargo:token-from-stdout CMD ARGS…`: the first line CMD prints."""

    def __init__(self, registry: RegistryConfig, argv: tuple[str, ...]) -> None:
        self.registry = registry
        self.argv = argv
        self.description = "cargo:token-from-stdout " + " ".join(argv)
        self.login_hint = f"check that `{' '.join(argv)}` prints a token"

    async def get(self, query: TokenQuery) -> Token:
        env = {
            **os.environ,
            "CARGO_REGISTRY_INDEX_URL": self.registry.index,
            "CARGO_REGISTRY_NAME_OPT": self.registry.name,
        }
        try:
            async with spawn(self.argv, env=env, echo_prefix=f"[{self.argv[0]}] ") as child:
                stdout = await asyncio.wait_for(child.output(), self.registry.provider_timeout)
                status, last = await child.exit_detail()
        except TimeoutError:  # before OSError, of which it is a subclass
            raise ProviderError(
                "other", f"`{self.argv[0]}` did not finish within {self.registry.provider_timeout:g} s"
            ) from None
        except OSError as exc:
            raise ProviderError("other", f"cannot start `{self.argv[0]}`: {exc.strerror or exc}") from None
        if status != 0:
            raise ProviderError("other", f"`{self.argv[0]}` exited with status {status}" + (f": {last}" if last else ""))
        token = stdout.decode("utf-8", "replace").splitlines()[:1]
        if not token or not token[0].strip():
            raise ProviderError("other", f"`{self.argv[0]}` printed no token")
        return Token(token[0].strip(), Session())
