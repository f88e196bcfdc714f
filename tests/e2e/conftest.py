"""End-to-end world: a token issuer, a registry that rejects anything unauthenticated, the
Vouch test double, a real `mitmdump -s addon/vouch_addon.py`, and real Cargo.

Everything a test writes lives under its tmp_path: HOME, CARGO_HOME, CARGO_VOUCH_HOME,
~/.gitconfig, so a test can afterwards search all of it for a leaked token.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from examples.demo.cdn import PresignedCdn
from examples.demo.cratebuild import CrateSpec
from examples.demo.issuer import Issuer
from examples.demo.profiles import PROFILES
from examples.demo.registry import TestRegistry
from examples.demo.tls import TestPki, make_test_pki
from tests.fixtures.paths import ADDON, BIN, REPO, VOUCH_BIN

LEGACY_CARGO = Path("/usr/bin/cargo")
LEGACY_RUSTC = Path("/usr/bin/rustc")


def current_cargo() -> tuple[str, str] | None:
    """(cargo, rustc) of the current toolchain on PATH, resolved past rustup's proxies so
    that tests may point HOME and CARGO_HOME elsewhere."""
    if shutil.which("rustup"):
        found = []
        for tool in ("cargo", "rustc"):
            result = subprocess.run(["rustup", "which", tool], capture_output=True, text=True)
            if result.returncode != 0:
                return None
            found.append(result.stdout.strip())
        return found[0], found[1]
    cargo, rustc = shutil.which("cargo"), shutil.which("rustc")
    if cargo and rustc and Path(cargo).resolve() != LEGACY_CARGO:
        return cargo, rustc
    return None


def mitmdump_binary() -> str:
    beside = Path(sys.executable).parent / "mitmdump"
    return str(beside) if beside.exists() else (shutil.which("mitmdump") or "mitmdump")


def port_free(address: str, port: int) -> bool:
    """Whether a server (which sets SO_REUSEADDR, as http.server does) can listen there."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            return False
        return True


def roots_with(ca: Path, out: Path) -> Path:
    """The system's roots plus `ca`, as a bundle for SSL_CERT_FILE."""
    defaults = ssl.get_default_verify_paths()
    system = Path(defaults.cafile or defaults.openssl_cafile)
    out.write_bytes(system.read_bytes() + b"\n" + ca.read_bytes())
    return out


def free_port() -> int:
    """A free loopback port that nobody else is handed before mitmdump binds it.

    Picked below the kernel's ephemeral range (`ip_local_port_range`), where no `bind(0)`
    or outgoing connection elsewhere on the machine can take it between this check and the
    proxy's own bind; bound once here to be sure nothing listens on it already.
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(200):
        port = random.randrange(10000, max(low, 10001))
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port below the ephemeral range")


@dataclass
class Proxy:
    """A running `mitmdump -s addon/vouch_addon.py`, its log and flow dumps."""

    process: subprocess.Popen[str]
    port: int
    log_path: Path
    flows_path: Path
    har_path: Path
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        """What the proxy printed so far; lines written at a flow's end may still be on
        their way: `stop()` first to read everything."""
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = 30) -> None:
        """Until the proxy has logged `text` (or stopped, or `timeout` passed)."""
        deadline = time.monotonic() + timeout
        while text not in self.log() and time.monotonic() < deadline and self.reader and self.reader.is_alive():
            self.reader.join(0.05)

    def stop(self) -> None:
        """SIGINT, as a user's Ctrl-C; returns once the log and flow files are complete."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.reader is not None:
            self.reader.join(timeout=20)


@dataclass
class World:
    root: Path
    env: dict[str, str]
    pki: TestPki
    issuer: Issuer
    registry: TestRegistry
    config_path: Path
    proxy_port: int
    proxies: list[Proxy] = field(default_factory=list)
    #: The presigned-URL store downloads are redirected to (the "cdn-redirect" profile).
    cdn: PresignedCdn | None = None
    #: How `cargo-vouch` is run: the real entry point, or a test launcher (soft_key_cli).
    cli_module: str = "cargo_vouch.cli"

    @property
    def home(self) -> Path:
        return Path(self.env["HOME"])

    @property
    def cainfo(self) -> Path:
        """The bundle Cargo trusts (the dedicated CA first), as `cargo vouch ca path` prints."""
        return Path(self.env["CARGO_VOUCH_HOME"]) / "ca" / "cargo-vouch-ca-cert.pem"

    # --- the Vouch test double ---------------------------------------------------------
    def vouch(self, *args: str) -> str:
        result = subprocess.run(["vouch", *args], env=self.env, capture_output=True, text=True, check=True)
        return result.stdout

    def login(self, lifetime: int | None = None) -> str:
        """`vouch login`; returns the new session token (for leak checks only)."""
        self.vouch("login", "--sub", "alice@example.com", *(["--lifetime", str(lifetime)] if lifetime else []))
        return self.vouch("credential", "token").strip()

    def provider_gets(self) -> int:
        log = Path(self.env["VOUCH_DOUBLE_LOG"])
        if not log.exists():
            return 0
        return sum(1 for line in log.read_text().splitlines() if json.loads(line).get("kind") == "get")

    # --- cargo-vouch ------------------------------------------------------------------
    def write_config(self, registries: str, extra_proxy: str = "") -> None:
        self.config_path.write_text(
            f'[proxy]\nlisten = "127.0.0.1:{self.proxy_port}"\nupstream-ca = "{self.pki.ca_cert}"\n{extra_proxy}\n{registries}'
        )

    def cargo_vouch(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", self.cli_module, *args],
            cwd=REPO, env=self.env, capture_output=True, text=True, check=check,
        )

    def start_proxy(self, *extra: str, cli: bool = False) -> Proxy:
        """`mitmdump -s addon/vouch_addon.py` with flow and HAR dumps, or with `cli`,
        `cargo-vouch proxy` as a user starts it."""
        log_path = self.root / "proxy.log"
        flows_path = self.root / "flows.mitm"
        har_path = self.root / "flows.har"
        if cli:
            command = [sys.executable, "-m", self.cli_module, "proxy", *extra]
        else:
            command = [
                mitmdump_binary(), "-s", str(ADDON),
                "--set", f"vouch_config={self.config_path}",
                "--set", "flow_detail=3",  # headers in the log: the redaction must hold
                "-w", str(flows_path),
                "--set", f"hardump={har_path}",
                *extra,
            ]
        process = subprocess.Popen(
            command, cwd=REPO, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        proxy = Proxy(process, self.proxy_port, log_path, flows_path, har_path)
        self.proxies.append(proxy)
        ready = threading.Event()

        def pump() -> None:
            assert process.stdout
            with log_path.open("a") as log:
                for line in process.stdout:
                    proxy.lines.append(line)
                    log.write(line)
                    log.flush()
                    if f"proxy listening at 127.0.0.1:{self.proxy_port}" in line:
                        ready.set()
            ready.set()

        proxy.reader = threading.Thread(target=pump, daemon=True)
        proxy.reader.start()
        ready.wait(timeout=60)
        if process.poll() is not None or f"proxy listening at 127.0.0.1:{self.proxy_port}" not in proxy.log():
            proxy.stop()
            raise AssertionError(f"mitmdump did not start:\n{proxy.log()}")
        return proxy

    def start_learned_proxy(self, *extra: str, registry: str = "corp") -> Proxy:
        """start_proxy, once it has read `registry`'s config.json (its own first request to
        the registry), with the registry's request log cleared: what the log holds next is
        the test's."""
        proxy = self.start_proxy(*extra)
        proxy.wait_for(f"{registry}: dl=")
        self.registry.clear_requests()
        return proxy

    # --- Cargo ------------------------------------------------------------------------
    def project(self, name: str, deps: list[CrateSpec], registry_index: str, net_cli: bool = False) -> Path:
        """A binary crate depending on `deps` from registry `corp`, with Cargo config."""
        project = self.root / name
        (project / "src").mkdir(parents=True)
        dep_lines = "\n".join(f'{d.name} = {{ version = "={d.version}", registry = "corp" }}' for d in deps)
        (project / "Cargo.toml").write_text(
            f'[package]\nname = "{name}"\nversion = "0.1.0"\nedition = "2018"\n\n[dependencies]\n{dep_lines}\n'
        )
        calls = "\n".join(f'    println!("{{}}", {d.name}::hello());' for d in deps)
        (project / "src" / "main.rs").write_text(f"fn main() {{\n{calls}\n}}\n")
        cargo_dir = project / ".cargo"
        cargo_dir.mkdir()
        text = "# the team's registry\n[registries.corp]\nindex = \"" + registry_index + "\"\n"
        if net_cli:
            text += "\n[net]\ngit-fetch-with-cli = true\n"
        (cargo_dir / "config.toml").write_text(text)
        return project

    def cargo(self, cargo: str, rustc: str, project: Path, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**self.env, "RUSTC": rustc, "CARGO_TERM_COLOR": "never", "CARGO_TARGET_DIR": str(project / "target")}
        return subprocess.run([cargo, *args], cwd=project, env=env, capture_output=True, text=True, timeout=900)

    def files_containing(self, secret: str, *extra_paths: Path) -> list[Path]:
        """Every file under the user's homes, projects and the proxy's outputs that holds `secret`."""
        needle = secret.encode()
        roots = [self.root, *extra_paths]
        hits = []
        # The Vouch session file is Vouch's own store (VOUCH.md), not something we wrote.
        skip = {Path(self.env["XDG_CONFIG_HOME"]) / "vouch"}
        for root in roots:
            for path in root.rglob("*"):
                if not path.is_file() or any(s in path.parents for s in skip):
                    continue
                if path.is_relative_to(self.registry.workdir):
                    continue  # the registry's own files: not a client-side store
                try:
                    if needle in path.read_bytes():
                        hits.append(path)
                except OSError:
                    pass
        return hits


@pytest.fixture
def world(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[World]:
    """`@pytest.mark.crates(N)` gives the registry N crates `crate00…` besides `hello`;
    `@pytest.mark.profile(NAME)` makes it behave like a real registry (examples/demo/profiles.py)."""
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": os.pathsep.join([str(VOUCH_BIN), str(BIN), str(Path(sys.executable).parent), os.environ["PATH"]]),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "CARGO_HOME": str(home / ".cargo"),
        "CARGO_VOUCH_HOME": str(home / ".local" / "share" / "cargo-vouch"),
        "CARGO_VOUCH_CONFIG": str(tmp_path / "cargo-vouch.toml"),
        "VOUCH_DOUBLE_LOG": str(tmp_path / "vouch-calls.jsonl"),
        "RUSTUP_HOME": os.environ.get("RUSTUP_HOME", str(Path.home() / ".rustup")),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",  # the proxy log is read line by line
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    pki = make_test_pki(tmp_path / "pki")
    chosen = request.node.get_closest_marker("profile")
    profile = PROFILES[chosen.args[0]] if chosen else PROFILES["default"]
    if profile.port and not port_free(profile.address, profile.port):
        pytest.skip(f"the {profile.name} profile needs port {profile.port} of {profile.address}, which is taken")
    with Issuer() as issuer, contextlib.ExitStack() as servers:
        env["VOUCH_TEST_ISSUER"] = issuer.url
        marker = request.node.get_closest_marker("crates")
        crates = [CrateSpec("hello", "0.1.0")]
        crates += [CrateSpec(f"crate{n:02d}", "1.0.0") for n in range(marker.args[0] if marker else 0)]
        cdn = servers.enter_context(PresignedCdn(tmp_path / "cdn", pki)) if profile.redirect == "cdn" else None
        if cdn is not None:
            # The CDN has a certificate from a public CA in real life: here the system's
            # roots, as the proxy writes them into Cargo's cainfo, include the test CA.
            env["SSL_CERT_FILE"] = str(roots_with(pki.ca_cert, tmp_path / "roots.pem"))
        registry = servers.enter_context(TestRegistry(tmp_path / "registry", pki, issuer, crates, profile, cdn))
        world = World(tmp_path, env, pki, issuer, registry, tmp_path / "cargo-vouch.toml", free_port(), cdn=cdn)
        try:
            yield world
        finally:
            for proxy in world.proxies:
                proxy.stop()


def needs_legacy_cargo() -> pytest.MarkDecorator:
    return pytest.mark.skipif(not LEGACY_CARGO.exists(), reason="Debian's cargo (1.65) is not installed: .ci/run installs it")
