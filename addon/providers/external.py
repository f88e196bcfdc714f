"""External credential providers (`vouch credential cargo`, or any other), run as Cargo runs
them: argv + `--cargo-plugin`, protocol v1 over the child's stdin and stdout.

They run as child processes under asyncio so the proxy keeps serving while one works, and
every wait is bounded: a provider that hangs is killed and reported, not waited on.
"""

from __future__ import annotations

import asyncio

from cargo_vouch.children import Child, environment_without_secrets, spawn
from cargo_vouch.config import RegistryConfig
from cargo_vouch.protocol import (
    CredentialRequest,
    Operation,
    ProtocolError,
    ProviderError,
    RegistryInfo,
    Token,
    parse_hello,
    parse_response,
)


class ExternalProvider:
    """A protocol-v1 provider such as `vouch credential cargo`: argv + `--cargo-plugin`."""

    login_hint = "run 'vouch login'"

    def __init__(self, registry: RegistryConfig, argv: tuple[str, ...], hidden_env: frozenset[str] = frozenset()) -> None:
        self.registry = registry
        self.argv = (*argv, "--cargo-plugin")
        self.description = " ".join(argv)
        self.hidden_env = hidden_env

    async def get(self, operation: Operation) -> Token:
        request = CredentialRequest(RegistryInfo(self.registry.index, self.registry.name), operation)
        answered: list[Token] = []
        try:
            env = environment_without_secrets(self.hidden_env)
            async with spawn(self.argv, env=env, stdin=True, echo_prefix=f"[{self.argv[0]}] ") as child:
                return await asyncio.wait_for(self._exchange(child, request, answered), self.registry.provider_timeout)
        except TimeoutError:  # before OSError, of which it is a subclass
            what = "answered but did not exit" if answered else "did not answer"
            raise ProviderError(
                "other",
                f"`{self.description}` {what} within {self.registry.provider_timeout:g} s",
            ) from None
        except OSError as exc:
            raise ProviderError("other", f"cannot start `{self.description}`: {exc.strerror or exc}") from None

    async def _exchange(self, child: Child, request: CredentialRequest, answered: list[Token]) -> Token:
        """`answered` gets the token once read: a provider must still exit, as Cargo waits
        for it to, but a timeout then says which of the two it failed to do."""
        stdin, stdout = child.process.stdin, child.process.stdout
        assert stdin and stdout
        try:
            parse_hello(await self._read_line(child))
            stdin.write(request.to_line())
            await stdin.drain()
            token = parse_response(await self._read_line(child))
            answered.append(token)
        except ProtocolError as exc:
            raise ProviderError("other", f"`{self.description}` broke the protocol: {exc}") from None
        except (BrokenPipeError, ConnectionResetError):
            raise ProviderError("other", await self._crash_message(child)) from None
        stdin.close()  # Cargo's signal that no other request follows
        await child.exited()
        return token

    async def _read_line(self, child: Child) -> bytes:
        assert child.process.stdout
        try:
            line = await child.process.stdout.readline()
        except ValueError:  # asyncio's limit on one line: no protocol message is that long
            raise ProtocolError("a line longer than 64 KiB") from None
        if not line:
            raise ProviderError("other", await self._crash_message(child))
        return line

    async def _crash_message(self, child: Child) -> str:
        status, last = await child.exit_detail()
        detail = f": {last}" if last else ""
        return f"`{self.description}` exited with status {status} before answering{detail}"
