"""Child processes (credential providers, git) that can never outlive their use.

Every child's stderr is drained as it comes, so a chatty child cannot block on a full
pipe, and the last lines are kept for the error message; a provider's stderr also goes
to ours, as Cargo lets a provider's prompts through to the terminal. Leaving the context
kills a child that is still running: after a timeout, an error, or a cancelled request.
"""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

#: Longer stderr lines are cut: they are for people to read.
MAX_LINE = 4096


class Child:
    def __init__(self, process: asyncio.subprocess.Process, echo_prefix: str | None) -> None:
        self.process = process
        self._tail: deque[str] = deque(maxlen=5)
        self._drained = asyncio.ensure_future(self._drain(echo_prefix))

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
        """Wait for the exit; its status and the last line it wrote to stderr, if any."""
        status = await self.process.wait()
        await self._drained
        return status, self._tail[-1] if self._tail else ""

    async def output(self) -> bytes:
        """Everything it prints, once it has exited."""
        assert self.process.stdout
        stdout = await self.process.stdout.read()
        await self.process.wait()
        return stdout


@asynccontextmanager
async def spawn(
    argv: tuple[str, ...] | list[str],
    *,
    env: Mapping[str, str] | None = None,
    stdin: bool = False,
    echo_prefix: str | None = None,
    cwd: str | None = None,
) -> AsyncIterator[Child]:
    """Raises OSError when the program cannot be started."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(env) if env is not None else None,
        cwd=cwd,
    )
    child = Child(process, echo_prefix)
    try:
        yield child
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await asyncio.wait([child._drained], timeout=1)
