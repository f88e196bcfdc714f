"""Cargo's built-in providers: `cargo:token` and `cargo:token-from-stdout`.

They read what Cargo itself would read (the token variable, `credentials.toml`, or the
first line a command prints), with Cargo's environment for the command.
"""

from __future__ import annotations

import asyncio
import os
import tomllib

from cargo_vouch.cargo_config import cargo_home, env_name
from cargo_vouch.children import spawn
from cargo_vouch.config import RegistryConfig
from cargo_vouch.protocol import Operation, ProviderError, Session, Token


class CargoTokenProvider:
    """`cargo:token`: the environment variable, then `$CARGO_HOME/credentials.toml`."""

    def __init__(self, registry: RegistryConfig) -> None:
        self.registry = registry
        self.env_var = env_name(f"registries.{registry.name}.token")
        self.description = "cargo:token"
        self.login_hint = f"set {self.env_var} or run 'cargo login --registry {registry.name}'"

    async def get(self, operation: Operation) -> Token:
        value = os.environ.get(self.env_var)
        if value:
            return Token(value, Session())
        home = cargo_home()
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

    async def get(self, operation: Operation) -> Token:
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
