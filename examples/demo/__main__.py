"""`make demo`: cargo-vouch's main job, end to end, on this machine only.

A registry that refuses every request without a valid Vouch-style token, a token issuer
standing in for the Vouch server, the Vouch CLI stand-in with a logged-in session, and a
real Cargo build of a project that depends on a private crate — through
`cargo vouch run`. Debian's Cargo 1.65 (which cannot authenticate index fetches or
downloads itself) with a git index where installed, else the Cargo on PATH with a sparse
index that says `auth-required`. Everything lives in a temporary directory, removed after.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from examples.demo.cratebuild import CrateSpec
from examples.demo.issuer import Issuer
from examples.demo.registry import TestRegistry
from examples.demo.tls import make_test_pki

REPO = Path(__file__).resolve().parents[2]
DEMO_BIN = Path(__file__).resolve().parent / "bin"
LEGACY_CARGO = Path("/usr/bin/cargo")
PRIVATE_CRATE = CrateSpec("hello", "0.1.0")


def pick_cargo() -> tuple[str, str, bool]:
    """(cargo, rustc, legacy): Debian's 1.65 where installed, else the current toolchain,
    resolved past rustup's proxies because the demo runs with its own HOME."""
    if LEGACY_CARGO.exists() and Path("/usr/bin/rustc").exists():
        return str(LEGACY_CARGO), "/usr/bin/rustc", True
    if shutil.which("rustup"):
        found = [subprocess.run(["rustup", "which", t], capture_output=True, text=True, check=True).stdout.strip()
                 for t in ("cargo", "rustc")]
        return found[0], found[1], False
    cargo, rustc = shutil.which("cargo"), shutil.which("rustc")
    if not cargo or not rustc:
        raise SystemExit("demo: no Cargo found: install Debian's cargo (apt-get install cargo) or rustup")
    return cargo, rustc, False


def write_project(root: Path, index: str) -> Path:
    project = root / "app"
    (project / "src").mkdir(parents=True)
    (project / "Cargo.toml").write_text(
        '[package]\nname = "app"\nversion = "0.1.0"\nedition = "2018"\n\n'
        f'[dependencies]\nhello = {{ version = "={PRIVATE_CRATE.version}", registry = "corp" }}\n'
    )
    (project / "src" / "main.rs").write_text('fn main() {\n    println!("{}", hello::hello());\n}\n')
    (project / ".cargo").mkdir()
    (project / ".cargo" / "config.toml").write_text(f'[registries.corp]\nindex = "{index}"\n')
    return project


def demo_environment(root: Path, issuer_url: str, rustc: str) -> dict[str, str]:
    """Everything under `root`: HOME, Cargo's and cargo-vouch's homes, the Vouch stand-in's
    session (first on PATH), so nothing of the user's own setup takes part."""
    home = root / "home"
    home.mkdir(exist_ok=True)
    return {
        "PATH": os.pathsep.join([str(DEMO_BIN), str(Path(sys.executable).parent), os.environ["PATH"]]),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "CARGO_HOME": str(home / ".cargo"),
        "CARGO_VOUCH_HOME": str(home / "cargo-vouch"),
        "CARGO_VOUCH_CONFIG": str(root / "cargo-vouch.toml"),
        "VOUCH_TEST_ISSUER": issuer_url,
        "RUSTUP_HOME": os.environ.get("RUSTUP_HOME", str(Path.home() / ".rustup")),
        "RUSTC": rustc,
        "CARGO_TARGET_DIR": str(root / "target"),
        "CARGO_TERM_COLOR": "never",
        "PYTHONPATH": str(REPO),
        "PYTHONUNBUFFERED": "1",
        "LANG": "C.UTF-8",
        "GIT_CONFIG_NOSYSTEM": "1",
    }


def say(line: str) -> None:
    print(f"demo: {line}", flush=True)


def main() -> int:
    cargo, rustc, legacy = pick_cargo()
    with tempfile.TemporaryDirectory(prefix="cargo-vouch-demo-") as scratch:
        root = Path(scratch)
        pki = make_test_pki(root / "pki")
        with Issuer() as issuer, TestRegistry(root / "registry", pki, issuer, [PRIVATE_CRATE]) as registry:
            index = registry.git_index_url if legacy else registry.sparse_index_url
            env = demo_environment(root, issuer.url, rustc)
            Path(env["CARGO_VOUCH_CONFIG"]).write_text(
                f'[proxy]\nupstream-ca = "{pki.ca_cert}"\n\n[registries.corp]\nindex = "{index}"\n'
            )
            project = write_project(root, index)
            version = subprocess.run([cargo, "--version"], capture_output=True, text=True, env=env).stdout.strip()
            say(f"registry {registry.origin} refuses every request without a valid token")
            say(f"index {index} ({'git' if legacy else 'sparse, auth-required'}); private crate "
                f"{PRIVATE_CRATE.name} {PRIVATE_CRATE.version}")
            subprocess.run(["vouch", "login", "--sub", "alice@example.com"], env=env, check=True,
                           stdout=subprocess.DEVNULL)
            say("vouch login: session for alice@example.com (the stand-in for a YubiKey touch)")
            say(f"$ cargo vouch run -- cargo run    ({version})")
            result = subprocess.run(
                [sys.executable, "-m", "cargo_vouch.cli", "run", "--", cargo, "run", "--quiet"],
                cwd=project, env=env, capture_output=True, text=True, timeout=900,
            )
            for line in result.stderr.splitlines():
                print(f"  | {line}")
            for line in result.stdout.splitlines():
                print(f"  > {line}")
            seen = registry.requests
            say(f"the registry saw {len(seen)} requests:")
            for request in seen:
                verdict = f"authenticated sub={request.subject}" if request.authenticated else f"REFUSED ({request.reason})"
                print(f"  {request.method} {request.path} -> {request.status}, {verdict}")
            built = result.returncode == 0 and "hello from hello" in result.stdout
            all_authenticated = bool(seen) and all(r.authenticated for r in seen)
            downloaded = any("/download" in r.path for r in seen)
    if built and all_authenticated and downloaded:
        print(f"demo: PASS: {version} built and ran app against a registry that authenticated all "
              f"{len(seen)} of its requests with a Vouch token")
        return 0
    print(f"demo: FAIL: build {'succeeded' if built else 'failed'}, "
          f"{sum(r.authenticated for r in seen)}/{len(seen)} requests authenticated")
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
