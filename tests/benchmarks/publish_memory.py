"""Prints how much the proxy's memory grows while Cargo publishes a large crate through it.
Target: a 50 MB crate publishes with the proxy growing by at most 64 MB.

Run: `.venv/bin/python tests/benchmarks/publish_memory.py [MEGABYTES]` (default 50). Real parts:
the demo registry (which checks the token), `cargo vouch run`, and Debian's Cargo 1.65
(else the Cargo on PATH) publishing a crate that holds MEGABYTES of random data, which
gzip cannot shrink. The proxy runs inside `run`'s process; its resident memory is read
from /proc before the publish and its high-water mark (VmHWM) after.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from examples.demo.__main__ import demo_environment, pick_cargo  # noqa: E402
from examples.demo.cratebuild import CrateSpec  # noqa: E402
from examples.demo.issuer import Issuer  # noqa: E402
from examples.demo.registry import TestRegistry  # noqa: E402
from examples.demo.tls import make_test_pki  # noqa: E402


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def main(megabytes: int) -> int:
    cargo, rustc, legacy = pick_cargo()
    with tempfile.TemporaryDirectory(prefix="cargo-vouch-bench-") as scratch:
        root = Path(scratch)
        pki = make_test_pki(root / "pki")
        with Issuer() as issuer, TestRegistry(root / "registry", pki, issuer, [CrateSpec("hello", "0.1.0")]) as registry:
            index = registry.git_index_url if legacy else registry.sparse_index_url
            env = demo_environment(root, issuer.url, rustc)
            Path(env["CARGO_VOUCH_CONFIG"]).write_text(
                f'[proxy]\nupstream-ca = "{pki.ca_cert}"\n\n[registries.corp]\nindex = "{index}"\n'
                f'allow-publish = true\nmax-publish-size = "{megabytes + 16}M"\n'
            )
            project = root / "big"
            (project / "src").mkdir(parents=True)
            (project / "Cargo.toml").write_text(
                '[package]\nname = "big"\nversion = "1.0.0"\nedition = "2018"\n'
                'description = "a large crate"\nlicense = "MIT"\npublish = ["corp"]\n'
            )
            (project / "src" / "lib.rs").write_text("")
            (project / "src" / "blob.bin").write_bytes(os.urandom(megabytes * 1024 * 1024))
            (project / ".cargo").mkdir()
            (project / ".cargo" / "config.toml").write_text(f'[registries.corp]\nindex = "{index}"\n')
            subprocess.run(["vouch", "login"], env=env, check=True, stdout=subprocess.DEVNULL)

            # A CMD that waits for a go-ahead: the proxy's baseline is read once it is up.
            go = root / "go"
            script = (f"import os, pathlib, time\nwhile not pathlib.Path({str(go)!r}).exists(): time.sleep(0.01)\n"
                      f"os.execvp({cargo!r}, [{cargo!r}, 'publish', '--no-verify', '--allow-dirty', "
                      "'--registry', 'corp'])\n")
            run = subprocess.Popen(
                [sys.executable, "-m", "cargo_vouch.cli", "run", "--", sys.executable, "-c", script],
                cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )
            lines: list[str] = []
            started = threading.Event()

            def pump() -> None:
                assert run.stdout
                for line in run.stdout:
                    lines.append(line)
                    if "cargo-vouch: proxy on" in line:
                        started.set()
                started.set()

            threading.Thread(target=pump, daemon=True).start()
            started.wait(60)
            baseline = status_kib(run.pid, "VmRSS")
            began = time.monotonic()
            go.touch()
            peak = baseline
            while run.poll() is None:
                try:
                    peak = max(peak, status_kib(run.pid, "VmHWM"))
                except (OSError, KeyError):
                    break
                time.sleep(0.02)  # sampling /proc, not synchronising: VmHWM keeps the true peak
            elapsed = time.monotonic() - began
            published = [p for p in registry.published if p.metadata.get("name") == "big"]
            crate_size = len(published[0].crate) if published else 0
    print(f"publish of a {megabytes} MB crate through the proxy ({'Cargo 1.65' if legacy else 'current Cargo'}):")
    print(f"  published:             {'yes' if published else 'NO'} ({crate_size / 1e6:.1f} MB .crate), {elapsed:.1f} s")
    print(f"  proxy RSS before:      {baseline / 1024:.1f} MiB")
    print(f"  proxy RSS peak:        {peak / 1024:.1f} MiB")
    growth = (peak - baseline) / 1024
    print(f"  growth:                {growth:.1f} MiB (target: at most 64 MB -> {'met' if growth <= 61 else 'NOT met'})")
    if not published:
        print("".join(lines[-20:]))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 50))
