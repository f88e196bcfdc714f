"""Event dispatch for the lean master: the addons that implement a hook, looked up once.

mitmproxy delivers every event by asking each addon in turn whether it has the hook, each
time inside a generator-based context manager and a coroutine of its own. Every request
through the proxy is eight events (four hooks, each followed by an `update` that no addon
of the lean master implements), so with ten addons that asking is eighty rounds per
request, about as much time as everything the addons then do. The lean master's addons do
not change once it runs, so which addon implements which hook is worked out on the first
event of each kind and kept until the chain changes.

Everything else is mitmproxy's: the same order (nested addons after their parent), the same
`safecall` around each handler (an addon error is logged, the others still run), the same
`AddonHalt`, async and sync handlers alike.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from mitmproxy import exceptions, hooks
from mitmproxy.addonmanager import AddonManager, safecall, traverse

Handler = Callable[..., Any]


class HookDispatch:
    def __init__(self, manager: AddonManager) -> None:
        self.manager = manager
        self._chain: list[Any] = []
        self._handlers: dict[str, tuple[Handler, ...]] = {}

    def install(self) -> None:
        """From now on the manager's events go through this dispatch."""
        self.manager.trigger_event = self.trigger_event  # type: ignore[method-assign]

    def handlers(self, name: str) -> tuple[Handler, ...]:
        """The callables that implement hook `name`, in mitmproxy's order."""
        if self._chain != self.manager.chain:
            self._chain = list(self.manager.chain)
            self._handlers = {}
        found = self._handlers.get(name)
        if found is None:
            found = tuple(
                handler for addon in traverse(self._chain)
                if callable(handler := getattr(addon, name, None))
            )
            self._handlers[name] = found
        return found

    async def trigger_event(self, event: hooks.Hook) -> None:
        handlers = self.handlers(event.name)
        if not handlers:
            return
        args = event.args()
        for handler in handlers:
            try:
                with safecall():
                    result = handler(*args)
                    if result is not None and inspect.isawaitable(result):
                        await result
            except exceptions.AddonHalt:
                return
