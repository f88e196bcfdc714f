"""Prints what header injection costs per request once a token is cached.

Hot path of the product: every index file and download of a build passes through
`requestheaders`. Run: `.venv/bin/python tests/benchmarks/hot_path.py [REQUESTS]`.
The provider is a real process (`cargo:token-from-stdout`); the figures show it ran once.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mitmproxy import http  # noqa: E402
from mitmproxy.addons import tlsconfig  # noqa: E402
from mitmproxy.test import taddons, tflow, tutils  # noqa: E402

from cargo_vouch.proxy.addons import make_addons  # noqa: E402

#: Requests in flight at once: about what Cargo keeps open over HTTP/2 in a large fetch.
IN_FLIGHT = 200
CARGO_HEADERS = (
    (b"Host", b"cargo.corp.example"),
    (b"User-Agent", b"cargo/1.95.0 (f2d3ce0bd 2026-03-21)"),
    (b"Accept", b"*/*"),
    (b"Accept-Encoding", b"deflate, gzip, br, zstd"),
    (b"cargo-protocol", b"version=1"),
)


async def measure(requests: int) -> dict[str, float]:
    """Per-request cost of `requestheaders` with a cached token, and what it holds."""
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["CARGO_VOUCH_HOME"] = str(Path(scratch) / "home")
        token_script = Path(scratch) / "token"
        token_script.write_text("#!/bin/sh\necho bench-token\n")
        token_script.chmod(0o755)
        config = Path(scratch) / "config.toml"
        config.write_text(
            '[registries.corp]\nindex = "sparse+https://cargo.corp.example/index/"\n'
            f'credential-provider = ["cargo:token-from-stdout", "{token_script}"]\n'
        )
        addons = make_addons()
        _, loader, _, injector, _, _ = addons
        with taddons.context(tlsconfig.TlsConfig(), *addons) as tctx:
            tctx.configure(loader, vouch_config=str(config))
            loader.state.router.registries[0].learned = True

            def flow(n: int):  # type: ignore[no-untyped-def]
                """A sparse index request as current Cargo sends it, in its CONNECT tunnel."""
                f = tflow.tflow(req=tutils.treq(host="cargo.corp.example", port=443, scheme=b"https",
                                                path=f"/index/3/c/crate{n}".encode(), headers=http.Headers(CARGO_HEADERS)))
                f.server_conn.address = ("cargo.corp.example", 443)
                f.response = None
                return f

            first = flow(-1)
            await injector.requestheaders(first)  # the one provider call
            assert first.request.headers["Authorization"] == "bench-token", "the measured path must be the token's"

            async def one_pass(in_flight: int, traced: bool) -> tuple[float, int]:
                """`in_flight` requests at a time, as a build keeps a few hundred open, not
                all of them. Timed without tracemalloc (it slows every allocation); memory
                measured in a second pass with it."""
                elapsed = 0.0
                if traced:
                    tracemalloc.start()
                for batch in range(0, requests, in_flight):
                    flows = [flow(n) for n in range(batch, min(batch + in_flight, requests))]
                    started = time.perf_counter()
                    for f in flows:
                        await injector.requestheaders(f)
                    elapsed += time.perf_counter() - started
                    for f in flows:
                        f.response = tutils.tresp()
                        injector.responseheaders(f)
                        injector.response(f)
                peak = tracemalloc.get_traced_memory()[1] if traced else 0
                tracemalloc.stop()
                return elapsed, peak

            elapsed, _ = await one_pass(IN_FLIGHT, traced=False)
            _, peak = await one_pass(IN_FLIGHT, traced=True)
            # The same with every request in flight at once: Python's collector then walks
            # all of them, which a real proxy never holds.
            all_at_once, _ = await one_pass(requests, traced=False)
    return {
        "requests": requests,
        "us_per_request": elapsed / requests * 1e6,
        "us_all_in_flight": all_at_once / requests * 1e6,
        "peak_kib": peak / 1024,
        "provider_calls": loader.state.cache.provider_calls,
    }


async def main(requests: int) -> None:
    figures = await measure(requests)
    print(f"requests:            {requests}")
    print(f"per request:         {figures['us_per_request']:.1f} µs (requestheaders, cached token, "
          f"{IN_FLIGHT} in flight; target 20 µs)")
    print(f"  all {requests} in flight: {figures['us_all_in_flight']:.1f} µs "
          "(garbage collection over every live flow)")
    print(f"throughput:          {1e6 / figures['us_per_request']:,.0f} requests/s")
    print(f"peak traced memory:  {figures['peak_kib']:.0f} KiB ({IN_FLIGHT} requests in flight)")
    print(f"provider processes:  {figures['provider_calls']}")

if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000))
