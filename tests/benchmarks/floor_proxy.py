"""Variant E of bench.py: mitmproxy's own floor. The same lean master `cargo vouch proxy`
runs (the six mitmproxy addons of `lean_addons`, loaded the same lean way, the same hook
dispatch), with a static token on every request and nothing of cargo-vouch's: no policy,
no request checks, no provider, no logging, no client check.

What E costs over A is what mitmproxy's layers (TLS both sides, HTTP/2 parsed and
re-encoded in Python) cost before any addon of ours runs; what D costs over E is
cargo-vouch. A target below E/A cannot be met by any change to cargo-vouch's addons.

Run: `.venv/bin/python tests/benchmarks/floor_proxy.py PORT CONFDIR UPSTREAM_CA`, with the
token in BENCH_TOKEN; it prints READY once it accepts connections and runs until SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from mitmproxy import http, master, options  # noqa: E402

from cargo_vouch.proxy.dispatch import HookDispatch  # noqa: E402
from cargo_vouch.proxy.inprocess import lean_addons, without_legacy_log_events  # noqa: E402 (before mitmproxy)

READY = "floor proxy listening"


class StaticToken:
    """The naive addon's one line, on the lean master."""

    def __init__(self, token: str) -> None:
        self.authorization = token

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        flow.request.headers["Authorization"] = self.authorization


class Ready:
    """Added after Proxyserver, whose `running` sets up the listening server first."""

    def running(self) -> None:
        print(READY, flush=True)


async def serve(port: int, confdir: str, upstream_ca: str, token: str) -> None:
    opts = options.Options(listen_host="127.0.0.1", listen_port=port, confdir=confdir,
                           ssl_verify_upstream_trusted_ca=upstream_ca)
    floor = master.Master(opts)
    without_legacy_log_events(floor)
    floor.addons.add(*lean_addons(), StaticToken(token), Ready())
    HookDispatch(floor.addons).install()  # as start_proxy does: cargo-vouch's cached hook dispatch
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, floor.shutdown)
    await floor.run()

def main() -> None:
    port, confdir, upstream_ca = sys.argv[1:4]
    asyncio.run(serve(int(port), confdir, upstream_ca, os.environ["BENCH_TOKEN"]))


if __name__ == "__main__":
    main()
