"""Prints how long `cargo vouch run` takes before CMD starts, i.e. until the proxy accepts
connections (run starts CMD only then). Target: median under 1.5 s.

Run: `.venv/bin/python tests/benchmarks/run_startup.py [ROUNDS]`. Each round is a fresh process,
as in CI: Python start-up, imports, config, CA check, proxy bind. The CA is issued once,
before the first round, as a CI cache or an earlier job would have it.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def one_round(env: dict[str, str], stamp: Path) -> float:
    started = time.time()
    subprocess.run(
        [sys.executable, "-m", "cargo_vouch.cli", "run", "--", sys.executable, "-S", "-c",
         f"import time, pathlib; pathlib.Path({str(stamp)!r}).write_text(repr(time.time()))"],
        cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    # CMD's own interpreter start (-S: no site) is counted too; about 10 ms.
    return float(stamp.read_text()) - started


def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        config = root / "config.toml"
        config.write_text(
            '[registries.corp]\nindex = "sparse+https://cargo.corp.example/index/"\n'
            'credential-provider = ["cargo:token-from-stdout", "echo", "bench-token"]\n'
        )
        env = {**os.environ, "CARGO_VOUCH_HOME": str(root / "home"), "CARGO_VOUCH_CONFIG": str(config),
               "PYTHONPATH": str(REPO)}
        subprocess.run([sys.executable, "-m", "cargo_vouch.cli", "ca", "init"], cwd=REPO, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        times = [one_round(env, root / "stamp") for _ in range(rounds)]
    print(f"run start-up to proxy ready, {rounds} rounds:")
    print(f"  median {statistics.median(times):.3f} s   min {min(times):.3f} s   max {max(times):.3f} s")
    print(f"  target: median under 1.5 s -> {'met' if statistics.median(times) < 1.5 else 'NOT met'}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
