"""The proxy inside our own process, for `cargo vouch run` and `cargo vouch proxy`.

`run` must keep its per-run proxy credential out of every command line (anyone on the
machine can read another process's argv) and must never leave a proxy behind when it
exits. Running the mitmproxy master on `run`'s own event loop gives both: the credential
lives in this process's memory, and the proxy ends with the process that owns it. The
master carries only the addons a proxy for Cargo needs, not everything `mitmdump` loads,
and it serves sockets bound before it was loaded (listener.py): mitmproxy's own server
setup is switched off (`server=False`) and each accepted connection is handed to the
regular-proxy server instance, as mitmproxy's own listener would.
"""

from __future__ import annotations

from cargo_vouch.proxy.lean_import import skip_default_addons

skip_default_addons()  # before mitmproxy.master is imported, below

import asyncio  # noqa: E402
import logging  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import IO  # noqa: E402

from mitmproxy import log, master, options  # noqa: E402
from mitmproxy.addons import core, dns_resolver, next_layer, proxyserver, termlog, tlsconfig  # noqa: E402
from mitmproxy.proxy.mode_servers import ServerInstance  # noqa: E402

from cargo_vouch import paths  # noqa: E402
from cargo_vouch.config import ListenAddress, VouchConfig  # noqa: E402
from cargo_vouch.proxy.addons import make_addons  # noqa: E402
from cargo_vouch.proxy.credential import ProxyCredential  # noqa: E402
from cargo_vouch.proxy.dispatch import HookDispatch  # noqa: E402
from cargo_vouch.proxy.listener import bound_address  # noqa: E402
from cargo_vouch.proxy.state import VouchState  # noqa: E402


class ProxyFailedToStart(Exception):
    """The proxy stopped before it was ready; the reason has been logged already."""


class _Ready:
    """Fires once the master runs (its `running` hook: every addon is configured)."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def running(self) -> None:
        self.event.set()


def without_legacy_log_events(proxy_master: master.Master) -> None:
    """mitmproxy turns every log line into a deprecated `add_log` event for all addons as
    well, on top of writing it: none of the lean master's addons reads those, and with one
    line per request that is work on every request."""
    for handler in list(logging.getLogger().handlers):
        if isinstance(handler, log.LegacyLogEvents) and handler.master is proxy_master:
            handler.uninstall()


def lean_addons(credential: tuple[str, str] | None = None) -> list[object]:
    """mitmproxy's addons that a registry proxy uses (nothing for replay, UIs or dumps),
    with the proxy credential checked where mitmproxy's `proxyauth` would be."""
    return [
        core.Core(),
        *([ProxyCredential(*credential)] if credential is not None else []),
        proxyserver.Proxyserver(),
        dns_resolver.DnsResolver(),
        next_layer.NextLayer(),
        tlsconfig.TlsConfig(),
    ]


@dataclass
class RunningProxy:
    master: master.Master
    task: asyncio.Task[None]
    address: ListenAddress
    servers: list[asyncio.Server]

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    async def stop(self) -> None:
        """Stops accepting, then lets the master run its `done` hooks and end."""
        for server in self.servers:
            server.close()
        if not self.task.done():
            self.master.shutdown()
        await self.task


async def start_proxy(
    config: VouchConfig,
    listeners: list[socket.socket],
    *,
    credential: tuple[str, str] | None = None,
    log_to: IO[str] = sys.stderr,
) -> RunningProxy:
    """Starts the proxy on this event loop, serving `listeners`, and returns once it does.
    It uses `config` as given (the file is not read again: see ConfigLoader).

    `credential` is (user, password); clients without it get 407."""
    logging.getLogger().setLevel(logging.INFO)
    # CMD's output is what a CI log is read for: of the proxy, show our one line per
    # request and mitmproxy's warnings, not its per-connection chatter.
    logging.getLogger("mitmproxy").setLevel(logging.WARNING)
    address = bound_address(listeners)
    # The CA directory before any addon is added: TlsConfig reads its CA the moment it is.
    opts = options.Options(confdir=str(paths.ca_dir()), server=False, listen_host=address.host, listen_port=address.port)
    proxy_master = master.Master(opts)
    without_legacy_log_events(proxy_master)
    state = VouchState()
    if credential is not None:
        state.proxy_credential = ":".join(credential)
    ready = _Ready()
    proxy_master.addons.add(termlog.TermLog(out=log_to), *lean_addons(credential), *make_addons(state, config), ready)
    opts.update(vouch_config=str(config.path) if config.path else "")
    task = asyncio.create_task(proxy_master.run(), name="cargo-vouch proxy")
    ready_wait = asyncio.create_task(ready.event.wait())
    await asyncio.wait([task, ready_wait], return_when=asyncio.FIRST_COMPLETED)
    running = RunningProxy(proxy_master, task, address, [])
    if not ready.event.is_set() or state.config is None:  # a bad config: logged as an error
        ready_wait.cancel()
        await running.stop()
        raise ProxyFailedToStart()
    proxy_master.addons.remove(ready)  # one addon less for mitmproxy to ask on every event
    HookDispatch(proxy_master.addons).install()
    regular = ServerInstance.make("regular", proxy_master.addons.get("proxyserver"))
    running.servers = [await asyncio.start_server(regular.handle_stream, sock=sock) for sock in listeners]
    return running

