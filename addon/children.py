"""Child processes (credential providers, git) that can never outlive their use.

Every child's stderr is drained as it comes, so a chatty child cannot block on a full
pipe, and the last lines are kept for the error message; a provider's stderr also goes
to ours, as Cargo lets a provider's prompts through to the terminal. Each child leads a
process group of its own, and leaving the context kills the whole group: after a
timeout, an error, a cancelled request — and after a normal exit too, so that nothing a
helper left running (holding our pipes open, say) outlives it.

A child gets our environment without the secrets the proxy itself reads: Cargo's token
variables and the CI client secret. Its /proc/PID/environ is readable by every process of
this user, the build's among them.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import os
import re
import signal
import sys
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from urllib.parse import quote, quote_plus

#: Longer stderr lines are cut: they are for people to read.
MAX_LINE = 4096
#: How long, once a child has exited, its stderr may take to end (a grandchild may hold it).
DRAIN_GRACE_SECONDS = 1.0
#: Cargo's token variables: CARGO_REGISTRY_TOKEN and CARGO_REGISTRIES_<NAME>_TOKEN.
_CARGO_TOKEN = re.compile(r"CARGO_REGISTR(?:Y|IES_[A-Za-z0-9_]+)_TOKEN")


#: Secrets shorter than this are looked for only as a whole value: as a substring they
#: would be found by chance.
MIN_SECRET_LENGTH = 16


def holds(block: bytes, secret: bytes, *, entries: bool = True) -> bool:
    """Whether `block` (one value, or NUL-separated `NAME=value` entries, or with
    `entries=False` a command line's words) holds `secret`: anywhere and in the forms a
    job writes it into other settings (see encoded_forms), for a secret long enough not to
    be found by chance; else as a whole value (or word)."""
    if len(secret) >= MIN_SECRET_LENGTH:
        return any(form in block for form in encoded_forms(secret))
    return any((part.partition(b"=")[2] if entries else part) == secret or part == secret for part in block.split(b"\0"))


@functools.lru_cache(maxsize=64)
def encoded_forms(secret: bytes) -> tuple[bytes, ...]:
    """The secret as written, percent-encoded (a URL's user:password), and base64 and
    base64url-encoded at each of the three offsets it can start at inside a longer value
    (`Basic base64(id:secret)`): for base64, the characters that depend on the secret alone."""
    forms = {secret, quote(secret, safe="").encode(), quote(secret).encode(), quote_plus(secret).encode()}
    for offset in range(3):
        encoded = base64.b64encode(bytes(offset) + secret)
        core = encoded[4 if offset else 0 : 4 * ((offset + len(secret)) // 3)]
        forms.update({core, core.replace(b"+", b"-").replace(b"/", b"_")})
    return tuple(sorted(form for form in forms if form))


def environment_without_secrets(hidden: Iterable[str] = (), base: Mapping[str, str] | None = None) -> dict[str, str]:
    """`base` (default: ours) without Cargo's token variables and the variables in `hidden`,
    nor any other variable whose value holds one of theirs (a JSON blob of the job's
    secrets, `client:secret`)."""
    environ = os.environ if base is None else base
    hidden = set(hidden)
    drop = {key for key in environ if key in hidden or _CARGO_TOKEN.fullmatch(key)}
    secrets = [os.fsencode(environ[key]) for key in drop if environ[key]]
    return {
        key: value
        for key, value in environ.items()
        if key not in drop and not any(holds(os.fsencode(value), secret) for secret in secrets)
    }


class _ExitAware(asyncio.subprocess.SubprocessStreamProtocol):
    """asyncio's `Process.wait()` returns only once every pipe is closed, so a grandchild
    holding stderr would hold it too: this also tells when the child itself has exited."""

    def __init__(self, limit: int, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=limit, loop=loop)
        self.exited: asyncio.Future[None] = loop.create_future()

    def process_exited(self) -> None:
        super().process_exited()
        if not self.exited.done():
            self.exited.set_result(None)


async def _create(argv: tuple[str, ...] | list[str], **kwargs: object) -> tuple[asyncio.subprocess.Process, _ExitAware]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.subprocess_exec(
        lambda: _ExitAware(limit=1 << 16, loop=loop), *argv, **kwargs  # type: ignore[arg-type]
    )
    return asyncio.subprocess.Process(transport, protocol, loop), protocol


#: Process creations under way. Cancelling one while asyncio connects its pipes leaves a
#: task that never ends (CPython 3.11 to 3.13), and `asyncio.run` then never returns: so a
#: creation is never cancelled, and shutting down waits for those under way (`settle`).
_creating: set[asyncio.Future[tuple[asyncio.subprocess.Process, _ExitAware]]] = set()


async def settle(timeout: float = 2.0) -> None:
    """Wait (bounded) for process creations under way; the processes are killed once made."""
    pending = [future for future in _creating if not future.done()]
    if pending:
        await asyncio.wait(pending, timeout=timeout)


def _kill_once_made(creating: asyncio.Future[tuple[asyncio.subprocess.Process, _ExitAware]]) -> None:
    if not creating.cancelled() and creating.exception() is None:
        try:
            os.killpg(creating.result()[0].pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class Child:
    def __init__(self, process: asyncio.subprocess.Process, protocol: _ExitAware, echo_prefix: str | None) -> None:
        self.process = process
        self._protocol = protocol
        self._tail: deque[str] = deque(maxlen=5)
        self._drained = asyncio.ensure_future(self._drain(echo_prefix))

    async def exited(self) -> int:
        """The exit status, as soon as the child has exited (whatever still holds its pipes).
        A caller that gives up waiting (a timeout) must not cancel the exit itself, which
        everyone who waits shares: the cleanup in `spawn` waits on it next."""
        await asyncio.shield(self._protocol.exited)
        returncode = self.process.returncode
        assert returncode is not None
        return returncode

    async def _drain(self, echo_prefix: str | None) -> None:
        """Reads in chunks, not lines: one endless line must not stop the draining."""
        assert self.process.stderr
        pending = b""
        while chunk := await self.process.stderr.read(1 << 16):
            *lines, pending = (pending + chunk).split(b"\n")
            if len(pending) > MAX_LINE:
                lines.append(pending)
                pending = b""
            for raw in lines:
                self._keep(raw, echo_prefix)
        self._keep(pending, echo_prefix)

    def _keep(self, raw: bytes, echo_prefix: str | None) -> None:
        line = raw[:MAX_LINE].decode("utf-8", "replace").rstrip()
        if line:
            self._tail.append(line)
            if echo_prefix is not None:
                print(f"{echo_prefix}{line}", file=sys.stderr, flush=True)

    async def exit_detail(self) -> tuple[int, str]:
        """Wait for the exit; its status and the last line it wrote to stderr, if any.
        What is still holding stderr once it has exited is not waited for beyond a grace."""
        status = await self.exited()
        await asyncio.wait([self._drained], timeout=DRAIN_GRACE_SECONDS)
        return status, self._tail[-1] if self._tail else ""

    async def output(self) -> bytes:
        """Everything it prints, once it has exited."""
        assert self.process.stdout
        stdout = await self.process.stdout.read()
        await self.exited()
        return stdout

    def kill_group(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


@asynccontextmanager
async def spawn(
    argv: tuple[str, ...] | list[str],
    *,
    env: Mapping[str, str],
    stdin: bool = False,
    echo_prefix: str | None = None,
    cwd: str | None = None,
) -> AsyncIterator[Child]:
    """Raises OSError when the program cannot be started. `env` is required: a child never
    inherits ours by accident (see environment_without_secrets)."""
    creating = asyncio.ensure_future(_create(
        argv,
        stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(env),
        cwd=cwd,
        start_new_session=True,  # its own process group, killed whole on the way out
    ))
    _creating.add(creating)
    creating.add_done_callback(_creating.discard)
    try:
        process, protocol = await asyncio.shield(creating)
    except asyncio.CancelledError:
        creating.add_done_callback(_kill_once_made)
        raise
    child = Child(process, protocol, echo_prefix)
    try:
        yield child
    finally:
        child.kill_group()
        await child.exited()
        await asyncio.wait([child._drained], timeout=DRAIN_GRACE_SECONDS)
