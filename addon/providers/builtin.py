"""Cargo's built-in providers: `cargo:token` and `cargo:token-from-stdout`.

They read what Cargo itself would read (the token variable, `credentials.toml`, or the
first line a command prints), with Cargo's environment for the command.
"""

from __future__ import annotations

import asyncio
import os
import tomllib

from cargo_vouch.cargo_config import cargo_home, env_name
from cargo_vouch.children import environment_without_secrets, spawn
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

    def __init__(self, registry: RegistryConfig, argv: tuple[str, ...], hidden_env: frozenset[str] = frozenset()) -> None:
        self.registry = registry
        self.argv = argv
        self.description = "cargo:token-from-stdout " + " ".join(argv)
        self.login_hint = f"check that `{' '.join(argv)}` prints a token"
        self.hidden_env = hidden_env

    async def get(self, operation: Operation) -> Token:
        env = {
            **environment_without_secrets(self.hidden_env),
            "CARGO_REGISTRY_INDEX_URL": self.registry.index,
            "CARGO_REGISTRY_NAME_OPT": self.registry.name,
        }
        try:
            # One deadline for the whole call: the first line, then the exit. What CMD leaves
            # running (holding stdout or stderr) is not waited for, and is killed with it.
            async with asyncio.timeout(self.registry.provider_timeout):
                async with spawn(self.argv, env=env, echo_prefix=f"[{self.argv[0]}] ") as child:
                    assert child.process.stdout is not None
                    first = await child.process.stdout.readline()
                    rest = asyncio.ensure_future(child.process.stdout.read())  # never a full pipe
                    status, last = await child.exit_detail()
                    rest.cancel()
        except TimeoutError:  # before OSError, of which it is a subclass
            raise ProviderError(
                "other", f"`{self.argv[0]}` did not finish within {self.registry.provider_timeout:g} s"
            ) from None
        except OSError as exc:
            raise ProviderError("other", f"cannot start `{self.argv[0]}`: {exc.strerror or exc}") from None
        if status != 0:
            raise ProviderError("other", f"`{self.argv[0]}` exited with status {status}" + (f": {last}" if last else ""))
        token = first.decode("utf-8", "replace").strip()
        if not token:
            raise ProviderError("other", f"`{self.argv[0]}` printed no token")
        return Token(token, Session())
