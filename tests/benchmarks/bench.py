"""`make bench`: a cold `cargo fetch` of 200 private crates, three ways, side by side.

  A  current Cargo straight to the registry, with its own token (auth-required honoured);
  B  current Cargo through `cargo vouch run` (token from cargo:token-from-stdout);
  C  the naive anchor: `mitmdump -s` with a five-line static-token addon (naive_addon.py).

The registry is Debian's nginx (nginx_registry.py). Rounds alternate A, B and C in a
rotating order, each with a fresh CARGO_HOME; each time is Cargo's alone, from just before
it starts to its exit (B's proxy start-up is reported on its own). Ratios are taken per
round, then their median, so that a slow moment of the machine hits all three alike.

Run: `.venv/bin/python tests/benchmarks/bench.py [ROUNDS]` (default 5).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from examples.demo.tls import make_test_pki  # noqa: E402
from tests.benchmarks.hot_path import measure as measure_hook  # noqa: E402
from tests.benchmarks.nginx_registry import TOKEN, NginxRegistry, start_nginx  # noqa: E402

HERE = Path(__file__).resolve().parent
TIMED = [sys.executable, str(HERE / "timed.py")]
#: A and C: current Cargo sends its own token to a registry that says auth-required.
CARGO_OWN_TOKEN = {"CARGO_REGISTRY_GLOBAL_CREDENTIAL_PROVIDERS": "cargo:token"}


def current_toolchain() -> tuple[str, str]:
    if shutil.which("rustup"):
        return tuple(  # type: ignore[return-value]
            subprocess.run(["rustup", "which", t], capture_output=True, text=True, check=True).stdout.strip()
            for t in ("cargo", "rustc")
        )
    cargo, rustc = shutil.which("cargo"), shutil.which("rustc")
    if not cargo or not rustc:
        raise SystemExit("bench: needs a current Cargo (rustup) on PATH")
    return cargo, rustc


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


@dataclass
class Bench:
    root: Path
    registry: NginxRegistry
    cargo: str
    rustc: str
    registry_ca: Path  # the test CA nginx's certificate comes from
    times: dict[str, list[float]] = field(default_factory=lambda: {"A": [], "B": [], "C": []})
    provider_calls: list[int] = field(default_factory=list)
    run_ready: list[float] = field(default_factory=list)
    b_peak_kib: list[int] = field(default_factory=list)
    unauthenticated: dict[str, int] = field(default_factory=dict)

    def project(self) -> Path:
        project = self.root / "app"
        if not project.exists():
            (project / "src").mkdir(parents=True)
            deps = "\n".join(f'{c.name} = {{ version = "=1.0.0", registry = "bench" }}' for c in self.registry.crates)
            (project / "Cargo.toml").write_text(
                f'[package]\nname = "app"\nversion = "0.1.0"\nedition = "2018"\n\n[dependencies]\n{deps}\n'
            )
            (project / "src" / "main.rs").write_text("fn main() {}\n")
            (project / ".cargo").mkdir()
            (project / ".cargo" / "config.toml").write_text(
                f'[registries.bench]\nindex = "{self.registry.sparse_index}"\n'
            )
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

    def vouch_env(self, work: Path) -> dict[str, str]:
        """B's environment and cargo-vouch config in `work`; the provider counts its calls
        in `work/provider-calls`. The CA home is shared, as a CI cache would keep it."""
        calls = work / "provider-calls"
        config = work / "cargo-vouch.toml"
        config.write_text(
            f'[proxy]\nupstream-ca = "{self.registry_ca}"\n\n'
            f'[registries.bench]\nindex = "{self.registry.sparse_index}"\n'
            f'credential-provider = ["cargo:token-from-stdout", "sh", "-c", "echo call >> {calls}; echo {TOKEN}"]\n'
        )
        return {**self.base_env(work / "cargo-home"), "CARGO_VOUCH_HOME": str(self.root / "cargo-vouch-home"),
                "CARGO_VOUCH_CONFIG": str(config), "PYTHONPATH": str(REPO)}

    def fetch_cmd(self, report: Path) -> list[str]:
        return [*TIMED, str(report), self.cargo, "fetch", "--quiet"]

    def check_registry(self, label: str) -> None:
        counts = self.registry.status_counts()
        # Current Cargo asks for config.json without a token first, to learn that the
        # registry wants one: one 401 there is its protocol, not a failure.
        probe = counts.pop("401 /index/config.json", 0) if label in ("A", "C") else 0
        self.unauthenticated[label] = self.unauthenticated.get(label, 0) + probe
        failed = {k: v for k, v in counts.items() if k != "200"}
        if failed:
            raise SystemExit(f"bench: {label}: registry answered {failed}")

    # -- A: Cargo straight to nginx ---------------------------------------------------
    def run_a(self, n: int) -> None:
        work = self.root / f"r{n}-A"
        env = {**self.base_env(work / "cargo-home"), "CARGO_REGISTRIES_BENCH_TOKEN": TOKEN, **CARGO_OWN_TOKEN,
               "CARGO_HTTP_CAINFO": str(self.registry_ca)}
        self.registry.clear_log()
        subprocess.run(self.fetch_cmd(work / "t"), cwd=self.project(), env=env, check=True)
        self.times["A"].append(json.loads((work / "t").read_text())["seconds"])
        self.check_registry("A")

    # -- B: through cargo vouch run ---------------------------------------------------
    def run_b(self, n: int) -> None:
        work = self.root / f"r{n}-B"
        work.mkdir()
        calls = work / "provider-calls"
        env = self.vouch_env(work)
        self.registry.clear_log()
        launched = time.time()
        run = subprocess.Popen([sys.executable, "-m", "cargo_vouch.cli", "run", "--", *self.fetch_cmd(work / "t")],
                               cwd=self.project(), env=env, stderr=subprocess.PIPE, text=True)
        watcher = PeakWatcher(run.pid)
        _, stderr = run.communicate()
        if run.returncode != 0:
            raise SystemExit(f"bench: B failed:\n{stderr}")
        watcher.join()
        report = json.loads((work / "t").read_text())
        self.times["B"].append(report["seconds"])
        self.run_ready.append(report["started_at"] - launched)
        self.provider_calls.append(len(calls.read_text().splitlines()))
        self.b_peak_kib.append(watcher.peak_kib)
        self.check_registry("B")

    # -- C: the naive mitmdump addon --------------------------------------------------
    def run_c(self, n: int) -> None:
        work = self.root / f"r{n}-C"
        work.mkdir()
        port = free_port()
        confdir = work / "mitmproxy"
        mitmdump = str(Path(sys.executable).parent / "mitmdump")
        proxy = subprocess.Popen(
            [mitmdump, "-q", "-s", str(HERE / "naive_addon.py"), "--listen-host", "127.0.0.1",
             "--listen-port", str(port), "--set", f"confdir={confdir}",
             "--set", f"ssl_verify_upstream_trusted_ca={self.registry_ca}"],
            env={**os.environ, "BENCH_TOKEN": TOKEN}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(port, proxy)
            env = {**self.base_env(work / "cargo-home"), "CARGO_REGISTRIES_BENCH_TOKEN": TOKEN, **CARGO_OWN_TOKEN,
                   "CARGO_HTTP_PROXY": f"http://127.0.0.1:{port}",
                   "CARGO_HTTP_CAINFO": str(confdir / "mitmproxy-ca-cert.pem")}
            self.registry.clear_log()
            subprocess.run(self.fetch_cmd(work / "t"), cwd=self.project(), env=env, check=True)
            self.times["C"].append(json.loads((work / "t").read_text())["seconds"])
            self.check_registry("C")
        finally:
            proxy.terminate()
            proxy.wait(timeout=20)

    # -- one 200 MB download through run: does the proxy's memory stay flat? ----------
    def stream_growth(self) -> tuple[float, float]:
        work = self.root / "stream"
        work.mkdir()
        env = self.vouch_env(work)
        go = work / "go"
        url = f"{self.registry.origin}/dl/huge/1.0.0/download"
        script = (
            f"import os, pathlib, subprocess, time\nwhile not pathlib.Path({str(go)!r}).exists(): time.sleep(0.01)\n"
            f"subprocess.run(['curl', '-sS', '-o', '/dev/null', '--proxy', os.environ['CARGO_HTTP_PROXY'], "
            f"'--cacert', os.environ['CARGO_HTTP_CAINFO'], {url!r}], check=True)\n"
        )
        self.registry.clear_log()
        run = subprocess.Popen([sys.executable, "-m", "cargo_vouch.cli", "run", "--", sys.executable, "-c", script],
                               cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
        assert run.stderr
        seen = set()
        for line in run.stderr:  # CMD started, and the start-up fetch of config.json done
            seen |= {mark for mark in ("cargo-vouch: proxy on", "(from config.json)") if mark in line}
            if len(seen) == 2:
                break
        baseline = status_kib(run.pid, "VmRSS")
        watcher = PeakWatcher(run.pid)
        go.touch()
        run.wait()
        watcher.join()
        self.check_registry("stream")
        size = (self.registry.root / "www" / "dl" / "huge" / "1.0.0" / "download").stat().st_size
        return size / 1e6, (watcher.peak_kib - baseline) / 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):6.2f} s   min {min(values):6.2f}   max {max(values):6.2f}"


def main(rounds: int) -> int:
    cargo, rustc = current_toolchain()
    with tempfile.TemporaryDirectory(prefix="cargo-vouch-bench-") as scratch:
        root = Path(scratch)
        (root / "home").mkdir()
        pki = make_test_pki(root / "pki")
        registry = start_nginx(root / "nginx", pki)
        try:
            bench = Bench(root, registry, cargo, rustc, pki.ca_cert)
            version = subprocess.run([cargo, "--version"], capture_output=True, text=True).stdout.strip()
            print(f"bench: {len(registry.crates)} crates from nginx (HTTP/2, TLS, static token), {version}, "
                  f"{rounds} rounds", flush=True)
            variants = [bench.run_a, bench.run_b, bench.run_c]
            for n in range(rounds):
                order = variants[n % 3:] + variants[: n % 3]
                for variant in order:
                    variant(n)
                print(f"  round {n + 1}: " + "  ".join(f"{k} {v[-1]:.2f} s" for k, v in bench.times.items()),
                      flush=True)
            streamed_mb, growth = bench.stream_growth()
        finally:
            registry.stop()
    hook = asyncio.run(measure_hook(20000))
    a, b, c = (bench.times[k] for k in "ABC")
    b_ratio = statistics.median(x / y for x, y in zip(b, a, strict=True))
    c_ratio = statistics.median(x / y for x, y in zip(c, a, strict=True))
    print()
    print(f"A direct (Cargo's own token)   {spread(a)}")
    print(f"B cargo vouch run              {spread(b)}")
    print(f"C naive mitmdump addon         {spread(c)}")
    print(f"B/A median of per-round ratios {b_ratio:.3f}   (target <= 1.15: {'met' if b_ratio <= 1.15 else 'NOT met'})")
    print(f"C/A median of per-round ratios {c_ratio:.3f}   (B below C: {'yes' if b_ratio < c_ratio else 'NO'})")
    print(f"provider calls during B        {', '.join(map(str, bench.provider_calls))} (per round; target 1)")
    print(f"run start-up to proxy ready    median {statistics.median(bench.run_ready):.3f} s (target <= 1.5 s)")
    print(f"proxy peak RSS during B        {max(bench.b_peak_kib) / 1024:.1f} MiB")
    print(f"proxy RSS growth, {streamed_mb:.0f} MB download {growth:.1f} MiB (target <= 32 MB)")
    print(f"hook cost, cached token        {hook['us_per_request']:.1f} µs per request (target <= 20 µs)")
    print(f"requests without the token     B: {bench.unauthenticated.get('B', 0)}; A and C: "
          f"{bench.unauthenticated.get('A', 0) + bench.unauthenticated.get('C', 0)} (Cargo's config.json probe)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5))
