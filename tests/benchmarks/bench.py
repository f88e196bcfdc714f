"""`make bench`: a cold `cargo fetch` of 200 private crates, five ways, side by side, on
loopback (RTT 0) and, with `--rtt-ms N`, over a network N ms away, in one run.

  A  current Cargo straight to the registry, with its own token (auth-required honoured);
  B  `cargo vouch run -- cargo fetch` (token from cargo:token-from-stdout), timed whole,
     from the launch of `run` to its exit: what a CI job pays. Its start-up until Cargo
     starts is reported on its own as well;
  C  the naive anchor: `mitmdump -s` with a five-line static-token addon (naive_addon.py);
  D  `cargo vouch proxy`, started once before the rounds with B's config, as a developer
     keeps it running; Cargo reaches it through CARGO_HTTP_PROXY and CARGO_HTTP_CAINFO.
  E  mitmproxy's floor (floor_proxy.py): D's lean master with a static token and nothing
     of cargo-vouch's, started once like D. D - E is what cargo-vouch costs; E - A is
     what mitmproxy costs before any addon of ours runs, which no change to them removes.

A, C, D and E are timed as Cargo's own time, from just before it starts to its exit
(timed.py): their proxies are up before Cargo starts, whereas `run` is part of B's job.

The registry is Debian's nginx (nginx_registry.py). On loopback a request costs Cargo a
fraction of a millisecond and the proxy's Python dominates every ratio; a real registry
is 20-80 ms away, where round trips dominate instead. So with `--rtt-ms N` (N > 0) the
same rounds run again with latency_relay.py between every client and nginx: Cargo in A,
the proxies in B, C and D, each paying the round trips it makes. RTT 0 goes straight to
nginx.

For each RTT, one uncounted fetch writes Cargo.lock (so that no round is the only one to
resolve), then rounds alternate A to E in a rotating order, each with a fresh
CARGO_HOME. Ratios are taken per round, then their median, so that a slow moment of the
machine hits all five alike. Also printed: the wall time of `cargo vouch run -- true`
(run_startup.py), provider calls, the proxy's peak RSS during B and its growth while
streaming 200 MB, and the hook's cost per request (hot_path.py).

Run: `.venv/bin/python tests/benchmarks/bench.py [ROUNDS] [--rtt-ms N]` (default: 5
rounds, RTT 0 only), or `make bench ROUNDS=5 RTT_MS=40`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from examples.demo.tls import make_test_pki  # noqa: E402
from tests.benchmarks.floor_proxy import READY as FLOOR_READY  # noqa: E402
from tests.benchmarks.hot_path import measure as measure_hook  # noqa: E402
from tests.benchmarks.latency_relay import READY as RELAY_READY  # noqa: E402
from tests.benchmarks.latency_relay import Endpoint  # noqa: E402
from tests.benchmarks.nginx_registry import TOKEN, NginxRegistry, sparse_index, start_nginx  # noqa: E402
from tests.benchmarks.run_startup import RUN_TRUE_TARGET_S, run_true_times, stamped  # noqa: E402
from tests.benchmarks.toolchain import VENV_BIN, cargo_vouch, current_toolchain, with_vouch_on_path  # noqa: E402

HERE = Path(__file__).resolve().parent
TIMED = [sys.executable, str(HERE / "timed.py")]
VARIANTS = "ABCDE"
#: A and C: current Cargo sends its own token to a registry that says auth-required.
CARGO_OWN_TOKEN = {"CARGO_REGISTRIES_BENCH_TOKEN": TOKEN, "CARGO_REGISTRY_GLOBAL_CREDENTIAL_PROVIDERS": "cargo:token"}
#: What `cargo vouch proxy` prints once it accepts connections.
PROXY_READY = "proxy listening at"
#: Generous: a fetch takes seconds; this only keeps a hung round from hanging the bench.
FETCH_TIMEOUT_S = 600
STARTUP_TIMEOUT_S = 60
#: Issue 13's targets: for each variant, a bound on the median of its per-round ratios to
#: A, at the RTT given (set for 40 ms) and on loopback, where B must also not exceed C.
TARGETS_AT_RTT = {"B": 1.20, "D": 1.05}
TARGETS_ON_LOOPBACK = {"D": 1.15}
CMD_START_TARGET_S = 1.5
#: A's slowest round over its fastest, and by how many seconds, beyond which the machine,
#: not the variants, moved the figures (Cargo straight to nginx does the same work every
#: round; on loopback a tenth of a second is still a quiet machine's jitter).
NOISY_SPREAD = 1.3
NOISY_SECONDS = 0.1


# -- processes the bench starts and must stop ---------------------------------------------


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


class PeakWatcher(threading.Thread):
    """Follows a process's resident high-water mark (VmHWM) until it exits."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_kib = 0
        self.start()

    def run(self) -> None:
        while True:
            try:
                self.peak_kib = max(self.peak_kib, status_kib(self.pid, "VmHWM"))
            except (OSError, KeyError, ValueError):
                return
            time.sleep(0.02)  # sampling; VmHWM itself keeps the true peak between samples


class OutputWatcher(threading.Thread):
    """Reads a process's output to its end into a log file, so that a chatty process (the
    proxy logs every request) never blocks on a full pipe; `wait_for` sees each line as it
    comes, so that readiness is the process's own word, not a guess."""

    def __init__(self, process: subprocess.Popen[str], log: Path) -> None:
        super().__init__(daemon=True)
        self.process = process
        self.log = log
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.start()

    def run(self) -> None:
        assert self.process.stdout
        with self.log.open("w") as log:
            for line in self.process.stdout:
                log.write(line)
                log.flush()
                self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, mark: str, what: str, timeout: float = STARTUP_TIMEOUT_S) -> str:
        """The first line that contains `mark`; fails if the process ends or stays silent."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                raise SystemExit(f"bench: {what} did not start; its output ({self.log}):\n{self.log.read_text()}")
            if mark in line:
                return line


def stop(process: subprocess.Popen[str] | subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it is still there 20 s later."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def latency_relay(registry: NginxRegistry, rtt_ms: int, work: Path) -> Iterator[str]:
    """latency_relay.py in front of nginx's relayed server, for as long as the block runs;
    yields the registry's origin through it."""
    work.mkdir(parents=True, exist_ok=True)
    relay = subprocess.Popen(
        [sys.executable, str(HERE / "latency_relay.py"), "--to", f"127.0.0.1:{registry.relayed_port}",
         "--rtt-ms", str(rtt_ms)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        line = OutputWatcher(relay, work / "relay.log").wait_for(RELAY_READY, "the latency relay")
        yield registry.name_relay(Endpoint.parse(line.split(RELAY_READY, 1)[1].split()[0]).port)
    finally:
        stop(relay)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("bench: mitmdump did not start") from None
            time.sleep(0.02)  # polling for the port


# -- the five variants ----------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """How every client reaches the registry at one RTT: nginx's origin, or a relay's."""

    rtt_ms: int
    origin: str

    @property
    def sparse_index(self) -> str:
        return sparse_index(self.origin)


@dataclass(frozen=True)
class VouchProxy:
    """A running `cargo vouch proxy`: what Cargo is pointed at, and its provider's call log."""

    url: str
    cainfo: str
    calls: Path


@dataclass
class Results:
    """The figures of one RTT's rounds."""

    times: dict[str, list[float]] = field(default_factory=lambda: {v: [] for v in VARIANTS})
    b_to_cmd: list[float] = field(default_factory=list)
    b_provider_calls: list[int] = field(default_factory=list)
    b_peak_kib: list[int] = field(default_factory=list)
    d_provider_calls: int = 0
    unauthenticated: dict[str, int] = field(default_factory=dict)

    def ratio(self, variant: str) -> float:
        """Median over rounds of this variant's time over A's in the same round."""
        return statistics.median(x / a for x, a in zip(self.times[variant], self.times["A"], strict=True))


@dataclass
class Bench:
    """What every RTT shares: the registry, the toolchain, scratch space, the CA home."""

    root: Path
    registry: NginxRegistry
    cargo: str
    rustc: str
    registry_ca: Path  # the test CA nginx's certificate comes from

    def project(self, route: Route) -> Path:
        """The app depending on every crate, one per route: Cargo.lock names the index URL."""
        project = self.root / f"app-rtt{route.rtt_ms}"
        if not project.exists():
            (project / "src").mkdir(parents=True)
            deps = "\n".join(f'{c.name} = {{ version = "=1.0.0", registry = "bench" }}' for c in self.registry.crates)
            (project / "Cargo.toml").write_text(
                f'[package]\nname = "app"\nversion = "0.1.0"\nedition = "2018"\n\n[dependencies]\n{deps}\n'
            )
            (project / "src" / "main.rs").write_text("fn main() {}\n")
            (project / ".cargo").mkdir()
            (project / ".cargo" / "config.toml").write_text(f'[registries.bench]\nindex = "{route.sparse_index}"\n')
        return project

    def base_env(self, cargo_home: Path) -> dict[str, str]:
        keep = ("PATH", "LANG", "RUSTUP_HOME", "TERM")
        return {
            **{k: v for k, v in os.environ.items() if k in keep},
            "HOME": str(self.root / "home"),
            "CARGO_HOME": str(cargo_home),
            "RUSTC": self.rustc,
            "CARGO_TERM_COLOR": "never",
            "CARGO_NET_RETRY": "0",
            "RUSTUP_HOME": os.environ.get("RUSTUP_HOME", str(Path.home() / ".rustup")),
        }

    def vouch_config(self, work: Path, route: Route) -> tuple[Path, Path]:
        """cargo-vouch's config for `route` in `work`, and the file where its provider
        counts its calls."""
        work.mkdir(parents=True, exist_ok=True)
        calls = work / "provider-calls"
        config = work / "cargo-vouch.toml"
        config.write_text(
            f'[proxy]\nupstream-ca = "{self.registry_ca}"\n\n'
            f'[registries.bench]\nindex = "{route.sparse_index}"\n'
            f'credential-provider = ["cargo:token-from-stdout", "sh", "-c", "echo call >> {calls}; echo {TOKEN}"]\n'
        )
        return config, calls

    def vouch_env(self, work: Path, config: Path) -> dict[str, str]:
        """The environment `cargo vouch` starts in. The CA home is shared, as a CI cache
        would keep it."""
        return with_vouch_on_path({**self.base_env(work / "cargo-home"), "CARGO_VOUCH_HOME": str(self.root / "cargo-vouch-home"),
                                   "CARGO_VOUCH_CONFIG": str(config), "PYTHONPATH": str(REPO)})

    def fetch_cmd(self, report: Path) -> list[str]:
        """Cargo's fetch, timed by timed.py into `report`."""
        return [*TIMED, str(report), self.cargo, "fetch", "--quiet"]

    @contextmanager
    def vouch_proxy(self, route: Route, work: Path) -> Iterator[VouchProxy]:
        """D's `cargo vouch proxy` with B's config, up once it says it listens, stopped when
        the block ends however it ends."""
        config, calls = self.vouch_config(work, route)
        env = self.vouch_env(work, config)
        cainfo = subprocess.run(cargo_vouch(self.cargo, "ca", "path"), env=env, capture_output=True, text=True,
                                check=True).stdout.strip()
        listen = f"127.0.0.1:{free_port()}"
        proxy = subprocess.Popen(cargo_vouch(self.cargo, "proxy", "--listen", listen), cwd=work, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            OutputWatcher(proxy, work / "proxy.log").wait_for(PROXY_READY, "cargo vouch proxy")
            yield VouchProxy(f"http://{listen}", cainfo, calls)
        finally:
            stop(proxy)

    @contextmanager
    def floor_proxy(self, work: Path) -> Iterator[tuple[str, str]]:
        """E's floor proxy, up once it says it listens; yields its URL and CA bundle."""
        work.mkdir(parents=True, exist_ok=True)
        port, confdir = free_port(), work / "mitmproxy"
        proxy = subprocess.Popen(
            [sys.executable, str(HERE / "floor_proxy.py"), str(port), str(confdir), str(self.registry_ca)],
            env={**os.environ, "BENCH_TOKEN": TOKEN}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        try:
            OutputWatcher(proxy, work / "proxy.log").wait_for(FLOOR_READY, "the floor proxy")
            yield f"http://127.0.0.1:{port}", str(confdir / "mitmproxy-ca-cert.pem")
        finally:
            stop(proxy)

    def measure(self, rtt_ms: int, rounds: int) -> Results:
        """All rounds at one RTT, with the relay (if any) and D's and E's proxies up throughout."""
        work = self.root / f"rtt{rtt_ms}"
        with ExitStack() as running:
            origin = self.registry.origin if rtt_ms == 0 else running.enter_context(latency_relay(self.registry, rtt_ms, work))
            route = Route(rtt_ms, origin)
            d_proxy = running.enter_context(self.vouch_proxy(route, work / "D-proxy"))
            e_proxy = running.enter_context(self.floor_proxy(work / "E-proxy"))
            phase = Phase(self, route, d_proxy, e_proxy, work)
            phase.warm_up()
            for n in range(rounds):
                phase.round(n)
            phase.results.d_provider_calls = count_lines(d_proxy.calls)
            return phase.results

    def run_true(self, rounds: int) -> list[float]:
        """`cargo vouch run -- true`, wall time, against this registry on loopback."""
        work = self.root / "run-true"
        config, _ = self.vouch_config(work, Route(0, self.registry.origin))
        return run_true_times(self.cargo, self.vouch_env(work, config), work, rounds)

    def stream_growth(self) -> tuple[float, float]:
        """One 200 MB download through `run`: does the proxy's memory stay flat? The
        baseline is taken once CMD has made its first request through the proxy, as Cargo
        starts with config.json; CMD then waits on its stdin for the go."""
        work = self.root / "stream"
        config, _ = self.vouch_config(work, Route(0, self.registry.origin))
        script = (
            "import os, subprocess, sys\n"
            "curl = ['curl', '-sS', '-o', '/dev/null', '--proxy', os.environ['CARGO_HTTP_PROXY'], "
            "'--cacert', os.environ['CARGO_HTTP_CAINFO']]\n"
            f"subprocess.run([*curl, {self.registry.origin + '/index/config.json'!r}], check=True)\n"
            "print('ready', flush=True)\n"
            "sys.stdin.readline()\n"
            f"subprocess.run([*curl, {self.registry.origin + '/dl/huge/1.0.0/download'!r}], check=True)\n"
        )
        self.registry.clear_log()
        # CMD's stdout is read for its word; run's own lines (they echo CMD) go to a file.
        with (work / "run.stderr").open("w") as stderr:
            run = subprocess.Popen(cargo_vouch(self.cargo, "run", "--", sys.executable, "-c", script), cwd=work,
                                   env=self.vouch_env(work, config), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=stderr, text=True)
        try:
            OutputWatcher(run, work / "cmd.log").wait_for("ready", f"the streaming run (see {work / 'run.stderr'})")
            baseline = status_kib(run.pid, "VmRSS")
            watcher = PeakWatcher(run.pid)
            assert run.stdin
            run.stdin.write("go\n")
            run.stdin.close()
            if run.wait(timeout=FETCH_TIMEOUT_S) != 0:
                raise SystemExit(f"bench: the streaming run failed:\n{(work / 'run.stderr').read_text()}")
            watcher.join()
        finally:
            stop(run)
        check_registry(self.registry, "stream", {}, probe_expected=False)
        size = (self.registry.root / "www" / "dl" / "huge" / "1.0.0" / "download").stat().st_size
        return size / 1e6, (watcher.peak_kib - baseline) / 1024


def count_lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def check_registry(registry: NginxRegistry, label: str, unauthenticated: dict[str, int], *, probe_expected: bool) -> None:
    """Fails unless nginx answered 200 to every request since the log was cleared: every
    request carried the token. Current Cargo on its own (A, C) asks for config.json
    without a token first, to learn that the registry wants one: that one 401 is its
    protocol, counted in `unauthenticated`, not a failure."""
    counts = registry.status_counts()
    probe = counts.pop("401 /index/config.json", 0) if probe_expected else 0
    unauthenticated[label] = unauthenticated.get(label, 0) + probe
    failed = {k: v for k, v in counts.items() if k != "200"}
    if failed:
        raise SystemExit(f"bench: {label}: registry answered {failed}")


@dataclass
class Phase:
    """The rounds at one RTT: each variant's fetch, each in a fresh CARGO_HOME under `work`."""

    bench: Bench
    route: Route
    d_proxy: VouchProxy
    e_proxy: tuple[str, str]  # URL, CA bundle
    work: Path
    results: Results = field(default_factory=Results)

    def round(self, n: int) -> None:
        """Each variant once, starting one further along each round."""
        runs: dict[str, Callable[[Path], None]] = {
            "A": self.run_a, "B": self.run_b, "C": self.run_c, "D": self.run_d, "E": self.run_e,
        }
        order = VARIANTS[n % len(VARIANTS):] + VARIANTS[: n % len(VARIANTS)]
        for variant in order:
            work = self.work / f"r{n}-{variant}"
            work.mkdir(parents=True)
            runs[variant](work)
        times = "  ".join(f"{v} {self.results.times[v][-1]:.2f} s" for v in VARIANTS)
        print(f"  RTT {self.route.rtt_ms} ms, round {n + 1} ({' '.join(order)}): {times}", flush=True)

    def warm_up(self) -> None:
        """One fetch as A, not counted: it writes Cargo.lock, which every round then finds."""
        work = self.work / "warm-up"
        self.fetch("warm-up", work, self.direct_env(work), probe_expected=True)

    def fetch(self, label: str, work: Path, env: dict[str, str], *, probe_expected: bool = False) -> float:
        """Cargo's own time for one fetch in `work`; fails unless every request to the
        registry carried the token."""
        work.mkdir(parents=True, exist_ok=True)
        self.bench.registry.clear_log()
        subprocess.run(self.bench.fetch_cmd(work / "t"), cwd=self.bench.project(self.route), env=env, check=True,
                       timeout=FETCH_TIMEOUT_S)
        check_registry(self.bench.registry, label, self.results.unauthenticated, probe_expected=probe_expected)
        return float(json.loads((work / "t").read_text())["seconds"])

    def direct_env(self, work: Path) -> dict[str, str]:
        return {**self.bench.base_env(work / "cargo-home"), **CARGO_OWN_TOKEN,
                "CARGO_HTTP_CAINFO": str(self.bench.registry_ca)}

    # -- A: Cargo straight to nginx (or the relay) ----------------------------------------
    def run_a(self, work: Path) -> None:
        self.results.times["A"].append(self.fetch("A", work, self.direct_env(work), probe_expected=True))

    # -- B: cargo vouch run -- cargo fetch, timed whole -------------------------------------
    def run_b(self, work: Path) -> None:
        bench = self.bench
        config, calls = bench.vouch_config(work, self.route)
        stamp = work / "cmd-started"
        command = cargo_vouch(bench.cargo, "run", "--", *stamped(stamp, [bench.cargo, "fetch", "--quiet"]))
        bench.registry.clear_log()
        launched, started = time.time(), time.perf_counter()
        run = subprocess.Popen(command, cwd=bench.project(self.route), env=bench.vouch_env(work, config),
                               stderr=subprocess.PIPE, text=True)
        watcher = PeakWatcher(run.pid)
        try:
            _, stderr = run.communicate(timeout=FETCH_TIMEOUT_S)
        finally:
            stop(run)
        seconds = time.perf_counter() - started
        if run.returncode != 0:
            raise SystemExit(f"bench: B failed:\n{stderr}")
        watcher.join()
        check_registry(bench.registry, "B", self.results.unauthenticated, probe_expected=False)
        self.results.times["B"].append(seconds)
        self.results.b_to_cmd.append(float(stamp.read_text()) - launched)
        self.results.b_provider_calls.append(count_lines(calls))
        self.results.b_peak_kib.append(watcher.peak_kib)

    # -- C: the naive mitmdump addon --------------------------------------------------------
    def run_c(self, work: Path) -> None:
        port = free_port()
        confdir = work / "mitmproxy"
        proxy = subprocess.Popen(
            [str(VENV_BIN / "mitmdump"), "-q", "-s", str(HERE / "naive_addon.py"), "--listen-host", "127.0.0.1",
             "--listen-port", str(port), "--set", f"confdir={confdir}",
             "--set", f"ssl_verify_upstream_trusted_ca={self.bench.registry_ca}"],
            env={**os.environ, "BENCH_TOKEN": TOKEN}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(port, proxy)
            env = {**self.direct_env(work), "CARGO_HTTP_PROXY": f"http://127.0.0.1:{port}",
                   "CARGO_HTTP_CAINFO": str(confdir / "mitmproxy-ca-cert.pem")}
            self.results.times["C"].append(self.fetch("C", work, env, probe_expected=True))
        finally:
            stop(proxy)

    # -- D: the running cargo vouch proxy ---------------------------------------------------
    def run_d(self, work: Path) -> None:
        env = {**self.bench.base_env(work / "cargo-home"), "CARGO_HTTP_PROXY": self.d_proxy.url,
               "CARGO_HTTP_CAINFO": self.d_proxy.cainfo}
        self.results.times["D"].append(self.fetch("D", work, env))

    # -- E: mitmproxy's floor ---------------------------------------------------------------
    def run_e(self, work: Path) -> None:
        url, cainfo = self.e_proxy
        # Cargo needs a token of its own for a registry whose config.json says auth-required
        # (cargo-vouch answers that for D; the floor does not); the floor sets the same one.
        env = {**self.direct_env(work), "CARGO_HTTP_PROXY": url, "CARGO_HTTP_CAINFO": cainfo}
        self.results.times["E"].append(self.fetch("E", work, env))


# -- the report -----------------------------------------------------------------------------


def spread(values: list[float], unit: str = "s") -> str:
    return f"median {statistics.median(values):6.3f} {unit}   min {min(values):6.3f}   max {max(values):6.3f}"


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


LABELS = {
    "A": "A direct (Cargo's own token)",
    "B": "B cargo vouch run, whole",
    "C": "C naive mitmdump addon",
    "D": "D cargo vouch proxy, running",
    "E": "E mitmproxy floor, static token",
}


def target_checks(rtt_ms: int, results: Results) -> list[str]:
    """Issue 13's targets for this RTT, each with its figure and whether it is met."""
    bounds = TARGETS_AT_RTT if rtt_ms else TARGETS_ON_LOOPBACK
    checks = [f"{v}/A {results.ratio(v):.3f} <= {bound:.2f} {verdict(results.ratio(v) <= bound)}" for v, bound in bounds.items()]
    if rtt_ms == 0:
        b, c = results.ratio("B"), results.ratio("C")
        checks.append(f"B/A {b:.3f} <= C/A {c:.3f} {verdict(b <= c)}")
    return checks


def print_rtt(rtt_ms: int, results: Results) -> None:
    where = f"through latency_relay.py, {rtt_ms / 2:g} ms each way" if rtt_ms else "loopback, no relay"
    print(f"RTT {rtt_ms} ms ({where}), {len(results.times['A'])} rounds")
    print(f"  {'':<32} {'median':>9} {'min':>8} {'max':>8}   /A (median of per-round ratios)")
    for variant in VARIANTS:
        times = results.times[variant]
        ratio = f"{results.ratio(variant):.3f}" if variant != "A" else ""
        print(f"  {LABELS[variant]:<32} {statistics.median(times):7.3f} s {min(times):8.3f} {max(times):8.3f}   {ratio}")
    direct = results.times["A"]
    if max(direct) > NOISY_SPREAD * min(direct) and max(direct) - min(direct) > NOISY_SECONDS:
        print(f"  warning: A took from {min(direct):.2f} to {max(direct):.2f} s: the machine was not quiet for these "
              "rounds; compare ratios from a quieter run")
    print(f"  targets                          {'; '.join(target_checks(rtt_ms, results))}")
    over_floor = statistics.median(d - e for d, e in zip(results.times["D"], results.times["E"], strict=True))
    print(f"  floor                            mitmproxy alone (E) costs {results.ratio('E'):.3f} x A; cargo-vouch adds "
          f"D - E = {over_floor:+.3f} s per fetch (median of rounds)")
    to_cmd = statistics.median(results.b_to_cmd)
    print(f"  B start-up until Cargo starts    median {to_cmd:.3f} s (target <= {CMD_START_TARGET_S} s: "
          f"{verdict(to_cmd <= CMD_START_TARGET_S)})")
    print(f"  provider calls during B          {', '.join(map(str, results.b_provider_calls))} (per round; target 1)")
    print(f"  provider calls during D          {results.d_provider_calls} in {len(results.times['D'])} rounds "
          "(one proxy throughout)")
    print(f"  proxy peak RSS during B          {max(results.b_peak_kib) / 1024:.1f} MiB")
    unauth = ", ".join(f"{v} {results.unauthenticated.get(v, 0)}" for v in VARIANTS)
    print(f"  requests without the token       {unauth} (A's: Cargo's config.json probe, one per fetch)")


def print_report(results: dict[int, Results], run_true: list[float], stream: tuple[float, float], hook: dict[str, float]) -> None:
    print()
    for rtt_ms, figures in results.items():
        print_rtt(rtt_ms, figures)
        print()
    median_true = statistics.median(run_true)
    print(f"cargo vouch run -- true, wall     {spread(run_true)}   ({len(run_true)} fresh processes; "
          f"target median <= {RUN_TRUE_TARGET_S} s: {verdict(median_true <= RUN_TRUE_TARGET_S)})")
    streamed_mb, growth = stream
    print(f"proxy RSS growth, {streamed_mb:.0f} MB download  {growth:.1f} MiB (target: flat, <= 32 MB)")
    print(f"hook cost, cached token           {hook['us_per_request']:.1f} µs per request (target <= 20 µs)")


# -- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rounds", nargs="?", type=int, default=5, help="rounds per RTT (default 5)")
    parser.add_argument("--rtt-ms", type=int, default=0,
                        help="also measure with this round-trip time to the registry (default 0: loopback only)")
    parser.add_argument("--run-true-rounds", type=int, default=10, help="fresh `cargo vouch run -- true` processes (default 10)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM ends the bench through its `finally`s, so nginx, the relay and D's proxy stop too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    cargo, rustc = current_toolchain()
    rtts = [0, args.rtt_ms] if args.rtt_ms > 0 else [0]
    with tempfile.TemporaryDirectory(prefix="cargo-vouch-bench-") as scratch, ExitStack() as running:
        root = Path(scratch)
        (root / "home").mkdir()
        pki = make_test_pki(root / "pki")
        registry = start_nginx(root / "nginx", pki)
        running.callback(registry.stop)
        bench = Bench(root, registry, cargo, rustc, pki.ca_cert)
        version = subprocess.run([cargo, "--version"], capture_output=True, text=True).stdout.strip()
        print(f"bench: {len(registry.crates)} crates from nginx (HTTP/2, TLS, static token), {version}, "
              f"{args.rounds} rounds at RTT {' and '.join(f'{rtt} ms' for rtt in rtts)}", flush=True)
        results = {rtt: bench.measure(rtt, args.rounds) for rtt in rtts}
        run_true = bench.run_true(args.run_true_rounds)
        stream = bench.stream_growth()
    hook = asyncio.run(measure_hook(20000))
    print_report(results, run_true, stream, hook)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
