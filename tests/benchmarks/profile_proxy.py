"""Where a running `cargo vouch proxy` spends its time per request: cProfile of the proxy
(D of bench.py) while current Cargo fetches 200 crates from nginx through it, FETCHES
times with a fresh CARGO_HOME each.

Prints the functions with the most time of their own, then the cumulative time of the
layers a request passes through, divided by the number of requests the proxy served, then
the time of its own each package spent, per request and as a share of the proxy's busy
time: what is mitmproxy's (its layers, h2/hpack/hyperframe, OpenSSL, asyncio) and what is
cargo-vouch's.
cProfile itself slows Python down by about half again: the shares matter, not the sums.

Run: `.venv/bin/python tests/benchmarks/profile_proxy.py [FETCHES] [--save PATH]`.
"""

from __future__ import annotations

import argparse
import collections
import pstats
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from examples.demo.tls import make_test_pki  # noqa: E402
from tests.benchmarks.bench import PROXY_READY, Bench, OutputWatcher, Route, free_port, stop  # noqa: E402
from tests.benchmarks.nginx_registry import start_nginx  # noqa: E402
from tests.benchmarks.toolchain import current_toolchain  # noqa: E402

#: Functions whose cumulative time says what a layer costs; matched on "file:function".
LAYERS = (
    "server.py:handle_client", "layer.py:handle_event", "_http2.py:_handle_event", "http/__init__.py:_handle_event",
    "tls.py:_handle_event", "addonmanager.py:handle_lifecycle", "inject.py:requestheaders",
    "inject.py:responseheaders", "clients.py:requestheaders", "credential.py:requestheaders",
    "tls_scope.py:tls_clienthello", "tlsconfig.py:tls_start_client", "tlsconfig.py:tls_start_server",
    "certs.py:get_cert", "base_events.py:_run_once", "selector_events.py:_write_ready", "sslproto.py",
)


def profile(fetches: int, save: Path | None) -> None:
    cargo, rustc = current_toolchain()
    with tempfile.TemporaryDirectory(prefix="cargo-vouch-profile-") as scratch:
        root = Path(scratch)
        (root / "home").mkdir()
        pki = make_test_pki(root / "pki")
        registry = start_nginx(root / "nginx", pki, big_mb=1)
        try:
            bench = Bench(root, registry, cargo, rustc, pki.ca_cert)
            route = Route(0, registry.origin)
            config, _ = bench.vouch_config(root / "proxy", route)
            env = bench.vouch_env(root / "proxy", config)
            stats_file = save or root / "proxy.prof"
            listen = f"127.0.0.1:{free_port()}"
            proxy = subprocess.Popen(
                [sys.executable, "-m", "cProfile", "-o", str(stats_file), "-m", "cargo_vouch.cli", "proxy",
                 "--listen", listen], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )
            try:
                watcher = OutputWatcher(proxy, root / "proxy.log")
                watcher.wait_for(PROXY_READY, "cargo vouch proxy under cProfile")
                cainfo = str(Path(env["CARGO_VOUCH_HOME"]) / "ca" / "cargo-vouch-ca-cert.pem")
                project = bench.project(route)
                for n in range(fetches):
                    fetch_env = {**bench.base_env(root / f"fetch{n}"), "CARGO_HTTP_PROXY": f"http://{listen}",
                                 "CARGO_HTTP_CAINFO": cainfo}
                    subprocess.run([cargo, "fetch", "--quiet"], cwd=project, env=fetch_env, check=True)
            finally:
                stop(proxy)  # SIGTERM: the proxy returns normally and cProfile writes its file
            served = sum(1 for line in (root / "proxy.log").read_text().splitlines() if " -> " in line)
        finally:
            registry.stop()
        report(pstats.Stats(str(stats_file)), served)


def report(stats: pstats.Stats, requests: int) -> None:
    print(f"requests served with a token: {requests}")
    stats.sort_stats("tottime").print_stats(30)
    entries = stats.stats  # type: ignore[attr-defined]
    print("cumulative time per request, by layer:")
    for needle in LAYERS:
        file_part, _, function = needle.partition(":")
        total = sum(
            entry[3] for (filename, _, name), entry in entries.items()
            if filename.endswith(file_part) and (not function or name == function)
        )
        if total:
            print(f"  {needle:42} {total / max(requests, 1) * 1e6:9.0f} µs")
    report_packages(stats, requests)


def package_of(filename: str, function: str) -> str:
    """Who a profiled function belongs to: a site-packages distribution, cargo-vouch, the
    standard library, or C code (builtins, socket and SSL calls); the event loop's wait
    for I/O apart, as idle."""
    if filename == "~" and "epoll" in function:
        return "(idle: waiting for I/O)"
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0]
    if str(REPO / "addon") in filename:
        return "cargo_vouch"
    if filename == "~":
        return "C code (builtins, sockets, TLS I/O)"
    if "/lib/python3" in filename or filename.startswith("<frozen"):
        return "standard library"
    return "other"


def report_packages(stats: pstats.Stats, requests: int) -> None:
    own_time: collections.Counter[str] = collections.Counter()
    for (filename, _, function), entry in stats.stats.items():  # type: ignore[attr-defined]
        own_time[package_of(filename, function)] += entry[2]
    busy = sum(seconds for package, seconds in own_time.items() if not package.startswith("(idle"))
    print(f"own time by package, per request ({busy / max(requests, 1) * 1e6:.0f} µs busy in all, under cProfile):")
    shown = [(package, seconds) for package, seconds in own_time.most_common() if seconds >= busy / 200]
    rest = sum(own_time.values()) - sum(seconds for _, seconds in shown)
    for package, seconds in [*shown, (f"{len(own_time) - len(shown)} others, each under 0.5%", rest)]:
        share = "" if package.startswith("(idle") else f"{seconds / busy:6.1%}"
        print(f"  {package:40} {seconds / max(requests, 1) * 1e6:7.0f} µs  {share}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("fetches", nargs="?", type=int, default=3)
    parser.add_argument("--save", type=Path, help="keep the cProfile data here")
    args = parser.parse_args()
    profile(args.fetches, args.save)


if __name__ == "__main__":
    main()
