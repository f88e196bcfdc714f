"""What `cargo vouch run` costs on its own, in fresh processes as CI starts it:

- the wall time of `cargo vouch run -- true`, launch to exit: the fixed cost every CI job
  pays on top of its command (start-up, proxy bind, shutdown). Target: median <= 0.4 s.
- the time until CMD starts. Target: median under 1.5 s.

Each round is a fresh process: Python start-up, imports, config, CA check, proxy bind. The
CA is issued once, before the first round, as a CI cache or an earlier job would have it.
On its own this script names a registry that does not exist; bench.py times `run -- true`
against its nginx registry instead.

Run: `.venv/bin/python tests/benchmarks/run_startup.py [ROUNDS]` (default 10).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.benchmarks.toolchain import cargo_vouch, current_toolchain, with_vouch_on_path  # noqa: E402

RUN_TRUE_TARGET_S = 0.4
CMD_START_TARGET_S = 1.5


def stamped(stamp: Path, argv: list[str]) -> list[str]:
    """`argv` behind a shell that first writes the time it starts to `stamp`: a shell and
    `date` cost a millisecond or two, where a Python wrapper would add its own start-up."""
    return ["sh", "-c", 'date +%s.%N > "$0" && exec "$@"', str(stamp), *argv]


def issue_ca(cargo: str, env: Mapping[str, str]) -> None:
    subprocess.run(cargo_vouch(cargo, "ca", "init"), env=env, check=True, stdout=subprocess.DEVNULL)


def run_true_seconds(cargo: str, env: Mapping[str, str], cwd: Path) -> float:
    """Wall time of one `cargo vouch run -- true`, from launch to exit."""
    started = time.perf_counter()
    subprocess.run(cargo_vouch(cargo, "run", "--", "true"), cwd=cwd, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def run_true_times(cargo: str, env: Mapping[str, str], cwd: Path, rounds: int) -> list[float]:
    """`run_true_seconds` over `rounds` fresh processes, once the CA is issued."""
    issue_ca(cargo, env)
    return [run_true_seconds(cargo, env, cwd) for _ in range(rounds)]


def cmd_start_seconds(cargo: str, env: Mapping[str, str], cwd: Path, stamp: Path) -> float:
    """Time from launching `cargo vouch run` until CMD starts."""
    started = time.time()
    subprocess.run(cargo_vouch(cargo, "run", "--", *stamped(stamp, ["true"])), cwd=cwd, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return float(stamp.read_text()) - started


def spread(values: list[float], unit: str = "s") -> str:
    return f"median {statistics.median(values):.3f} {unit}   min {min(values):.3f}   max {max(values):.3f}"


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def main(rounds: int) -> None:
    cargo, _ = current_toolchain()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        config = root / "config.toml"
        config.write_text(
            '[registries.corp]\nindex = "sparse+https://cargo.corp.example/index/"\n'
            'credential-provider = ["cargo:token-from-stdout", "echo", "bench-token"]\n'
        )
        env = with_vouch_on_path({**os.environ, "CARGO_VOUCH_HOME": str(root / "home"), "CARGO_VOUCH_CONFIG": str(config),
                                  "PYTHONPATH": str(REPO)})
        wall = run_true_times(cargo, env, REPO, rounds)
        to_cmd = [cmd_start_seconds(cargo, env, REPO, root / "stamp") for _ in range(rounds)]
    print(f"cargo vouch run, {rounds} fresh processes each:")
    print(f"  run -- true, wall time       {spread(wall)}   "
          f"(target: median <= {RUN_TRUE_TARGET_S} s: {verdict(statistics.median(wall) <= RUN_TRUE_TARGET_S)})")
    print(f"  start-up until CMD starts    {spread(to_cmd)}   "
          f"(target: median under {CMD_START_TARGET_S} s: {verdict(statistics.median(to_cmd) < CMD_START_TARGET_S)})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
