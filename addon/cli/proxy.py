"""`cargo vouch proxy`: the proxy in the foreground, as `mitmdump -s addon/vouch_addon.py`."""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import sys

from cargo_vouch import paths
from cargo_vouch.ca.authority import ensure_ca
from cargo_vouch.config import VouchConfig, load_config, parse_listen, registry_hosts
from cargo_vouch.errors import UsageError, VouchError
from cargo_vouch.hardening import protect_process
from cargo_vouch.proxy.lean_import import starting_up
from cargo_vouch.proxy.listener import bind_listeners


def cmd_proxy(args: argparse.Namespace) -> int:
    """The proxy in the foreground until Ctrl-C: the addon of `mitmdump -s addon/vouch_addon.py`
    on a master with only the addons it needs (a quarter less time per request than
    mitmdump's full set, measured with tests/benchmarks/bench.py's fetch)."""
    config = load_config(args.config)
    try:
        listen = parse_listen(args.listen) if args.listen else config.proxy.listen
    except ValueError as exc:
        raise UsageError(f"--listen: {exc}") from None
    # Before the proxy starts, as in `run`: mitmproxy would create its own CA there otherwise.
    ensure_ca(paths.ca_dir(), registry_hosts(config))
    protect_process()
    listeners = bind_listeners(listen)
    try:
        return asyncio.run(_serve(config, listeners))
    finally:
        for sock in listeners:
            sock.close()


async def _serve(config: VouchConfig, listeners: list[socket.socket]) -> int:
    with starting_up():
        from cargo_vouch.proxy.inprocess import ProxyFailedToStart, start_proxy  # mitmproxy: loaded now

        try:
            proxy = await start_proxy(config, listeners, log_to=sys.stdout)
        except ProxyFailedToStart:
            raise VouchError("the proxy did not start (see the error above)") from None
    print(f"cargo-vouch: proxy listening at {proxy.address} (Cargo's http.proxy: {proxy.url})", flush=True)
    print(f"cargo-vouch: CA certificate (Cargo's http.cainfo): {paths.ca_cert_path()}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait([stopped, proxy.task], return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    await proxy.stop()
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("proxy", help="run the proxy in the foreground")
    parser.add_argument("--listen", help=f"loopback HOST:PORT (default: [proxy] listen, else {paths.DEFAULT_LISTEN})")
    parser.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help="cargo-vouch config file")
    parser.set_defaults(func=cmd_proxy)
