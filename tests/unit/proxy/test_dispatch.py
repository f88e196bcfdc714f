"""The lean master's event dispatch delivers events as mitmproxy's own does: same order,
nested addons after their parent, errors logged without stopping the others, AddonHalt
honoured, and addons added later seen."""

from __future__ import annotations

from mitmproxy import exceptions
from mitmproxy.proxy.layers.http import HttpRequestHeadersHook
from mitmproxy.test import taddons, tflow

from cargo_vouch.proxy.dispatch import HookDispatch


class Recorder:
    def __init__(self, name: str, seen: list[str], *, fail: bool = False, halt: bool = False, nested: list | None = None) -> None:
        self.name, self.seen, self.fail, self.halt = name, seen, fail, halt
        if nested is not None:
            self.addons = nested

    async def requestheaders(self, flow) -> None:  # type: ignore[no-untyped-def]
        self.seen.append(self.name)
        if self.fail:
            raise ValueError("broken addon")
        if self.halt:
            raise exceptions.AddonHalt()


class Silent:
    """An addon without the hook: never asked again once the table is built."""


async def test_events_reach_the_same_addons_in_the_same_order_as_mitmproxy_s(caplog) -> None:  # type: ignore[no-untyped-def]
    seen: list[str] = []
    with taddons.context() as tctx:
        manager = tctx.master.addons
        manager.add(Recorder("a", seen, nested=[Recorder("a.child", seen)]), Silent(), Recorder("b", seen, fail=True),
                    Recorder("c", seen))
        await manager.trigger_event(HttpRequestHeadersHook(tflow.tflow()))
        mitmproxy_order = list(seen)
        seen.clear()
        HookDispatch(manager).install()
        await manager.handle_lifecycle(HttpRequestHeadersHook(tflow.tflow()))
        assert seen == mitmproxy_order == ["a", "a.child", "b", "c"]
        assert "Addon error: broken addon" in caplog.text

        manager.add(Recorder("late", seen))
        seen.clear()
        await manager.trigger_event(HttpRequestHeadersHook(tflow.tflow()))
        assert seen[-1] == "late"


async def test_addon_halt_stops_the_chain() -> None:
    seen: list[str] = []
    with taddons.context() as tctx:
        manager = tctx.master.addons
        manager.add(Recorder("first", seen, halt=True), Recorder("never", seen))
        HookDispatch(manager).install()
        await manager.trigger_event(HttpRequestHeadersHook(tflow.tflow()))
        assert seen == ["first"]
