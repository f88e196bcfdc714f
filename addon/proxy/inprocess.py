"""The proxy inside our own process, for `cargo vouch run`.

`run` must keep its per-run proxy credential out of every command line (anyone on the
machine can read another process's argv) and must never leave a proxy behind when it
exits. Running the mitmproxy master on `run`'s own event loop gives both: the credential
is an option set in memory, and the proxy ends with the process that owns it. The master
carries only the addons a proxy for Cargo needs, not everything `mitmdump` loads.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from mitmproxy import master, options
from mitmproxy.addons import (
    core,
    dns_resolver,
    next_layer,
    proxyauth,
    proxyserver,
    termlog,
    tlsconfig,
)

from cargo_vouch import paths
from cargo_vouch.config import ListenAddress
from cargo_vouch.proxy.addons import make_addons


class ProxyFailedToStart(Exception):
    """The proxy stopped before it was ready; the reason has been logged already."""


class _Ready:
    """Fires once the servers listen: mitmproxy calls `running` after binding them."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def running(self) -> None:
        self.event.set()


def lean_addons() -> list[object]:
    """mitmproxy's addons that a registry proxy uses; nothing for replay, UIs or dumps."""
    return [
        core.Core(),
        proxyauth.ProxyAuth(),
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

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    async def stop(self) -> None:
        if not self.task.done():
            self.master.shutdown()
        await self.task


async def start_proxy(
    config_path: Path | None,
    listen: ListenAddress,
    *,
    proxy_credential: str | None = None,
    log_to: IO[str] = sys.stderr,
) -> RunningProxy:
    """Starts the proxy on this event loop and returns once it accepts connections.

    `listen.port` may be 0: the bound port is in the result. `proxy_credential` is
    `user:password`; clients without it get 407.
    """
    logging.getLogger().setLevel(logging.INFO)
    # CMD's output is what a CI log is read for: of the proxy, show our one line per
    # request and mitmproxy's warnings, not its per-connection chatter.
    logging.getLogger("mitmproxy").setLevel(logging.WARNING)
    opts = options.Options()
    proxy_master = master.Master(opts)
    ready = _Ready()
    proxy_master.addons.add(termlog.TermLog(out=log_to), *lean_addons(), *make_addons(), ready)
    opts.update(
        confdir=str(paths.ca_dir()),
        vouch_config=str(config_path) if config_path else "",
        listen_host=listen.host,
        listen_port=listen.port,
        proxyauth=proxy_credential,
    )
    task = asyncio.create_task(proxy_master.run(), name="cargo-vouch proxy")
    ready_wait = asyncio.create_task(ready.event.wait())
    await asyncio.wait([task, ready_wait], return_when=asyncio.FIRST_COMPLETED)
    running = RunningProxy(proxy_master, task, listen)
    bound = proxy_master.addons.get("proxyserver").listen_addrs() if ready.event.is_set() else []
    if not bound:  # a bad config or a taken port: logged as an error, no server up
        ready_wait.cancel()
        await running.stop()
        raise ProxyFailedToStart()
    running.address = ListenAddress(listen.host, int(bound[0][1]))
    return running
