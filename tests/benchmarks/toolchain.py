"""The programs the benchmarks run: current Cargo and rustc, and `cargo vouch` through it.

`cargo vouch …` is timed as CI types it: Cargo finds `cargo-vouch` on PATH and execs it,
so the figures include Cargo's dispatch (some 20-30 ms), not only cargo-vouch's own time.
Cargo is the toolchain's binary, not rustup's proxy, for every variant alike.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

#: Where `make install` put `cargo-vouch` (and `mitmdump`): beside this interpreter.
VENV_BIN = Path(sys.executable).parent


def current_toolchain() -> tuple[str, str]:
    """Paths of the current Cargo and rustc."""
    if shutil.which("rustup"):
        cargo, rustc = (
            subprocess.run(["rustup", "which", tool], capture_output=True, text=True, check=True).stdout.strip()
            for tool in ("cargo", "rustc")
        )
        return cargo, rustc
    cargo_path, rustc_path = shutil.which("cargo"), shutil.which("rustc")
    if not cargo_path or not rustc_path:
        raise SystemExit("bench: needs a current Cargo (rustup) on PATH")
    return cargo_path, rustc_path


def cargo_vouch(cargo: str, *args: str) -> list[str]:
    """`cargo vouch ARGS…`; its environment needs `with_vouch_on_path`."""
    return [cargo, "vouch", *args]


def with_vouch_on_path(env: Mapping[str, str]) -> dict[str, str]:
    """`env` with this checkout's `cargo-vouch` first on PATH, where Cargo looks for it."""
    return {**env, "PATH": f"{VENV_BIN}:{env.get('PATH', '')}"}
