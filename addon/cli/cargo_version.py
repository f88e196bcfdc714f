"""Which Cargo a build runs, and which index kinds it can read.

Cargo reads a sparse index (`sparse+https://…`) from 1.68 on; older Cargo, 1.65 among
them, needs the registry's git index. `doctor` and `setup` say so before a build fails on
it, naming the git index URL where the registry's kind makes it known.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

#: The first Cargo that reads a sparse index.
SPARSE_SINCE = (1, 68)
TIMEOUT = 30.0


def version_of(text: str) -> tuple[int, int] | None:
    """(major, minor) from `cargo --version` output (or a toolchain name such as 1.65.0)."""
    found = re.search(r"(?:cargo |^)(\d+)\.(\d+)", text.strip())
    return (int(found[1]), int(found[2])) if found else None


def installed(cwd: Path) -> tuple[int, int] | None:
    """The version of the Cargo a build in `cwd` runs (`$CARGO`, else PATH's), if it runs."""
    try:
        result = subprocess.run(
            [os.environ.get("CARGO") or "cargo", "--version"], cwd=cwd,
            env={"RUSTUP_AUTO_INSTALL": "0", **os.environ}, capture_output=True, text=True, timeout=TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return version_of(result.stdout) if result.returncode == 0 else None


def reads(version: tuple[int, int], index: str) -> bool:
    return not index.startswith("sparse+") or version >= SPARSE_SINCE


def git_index_for(index: str) -> str | None:
    """The git index of a sparse one, for registries whose URL shapes say it
    (REGISTRIES.md): Artifactory and Gitea/Forgejo."""
    parts = urlsplit(index.removeprefix("sparse+"))
    origin = f"https://{parts.netloc}"
    artifactory = re.fullmatch(r"/artifactory/api/cargo/([^/]+)/index/?", parts.path)
    if artifactory:
        return f"{origin}/artifactory/git/{artifactory[1]}.git"
    gitea = re.fullmatch(r"/api/packages/([^/]+)/cargo/?", parts.path)
    if gitea:
        return f"{origin}/{gitea[1]}/_cargo-index.git"
    return None


def advice(version: tuple[int, int], index: str) -> str | None:
    """What to do when this Cargo cannot read this index; None when it can."""
    if reads(version, index):
        return None
    git = git_index_for(index)
    use = f"its git index, {git}," if git else "the registry's git index URL"
    return (
        f"Cargo {version[0]}.{version[1]} cannot read a sparse index (Cargo reads them from 1.68): give it "
        f"{use} in [registries] of Cargo's config and of the cargo-vouch config, or use a newer Cargo"
    )
