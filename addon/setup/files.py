"""Filesystem primitives for setup: atomic replacement and the directories a new file needs."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ca.authority import write_atomic as ca_write_atomic


def write_atomic(path: Path, data: bytes, new_mode: int | None = None) -> None:
    """Replace `path` atomically (ca.authority.write_atomic), as the user would expect of
    an edit: the mode of an existing file is kept, and a symlink is followed so the link
    itself survives."""
    real = path.resolve() if path.is_symlink() else path
    try:
        mode = stat.S_IMODE(real.stat().st_mode)
    except FileNotFoundError:
        mode = new_mode if new_mode is not None else 0o666 & ~_umask()
    ca_write_atomic(real, data, mode)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _missing_dirs(directory: Path) -> list[Path]:
    """Directories that must be created for `directory` to exist, outermost first."""
    missing: list[Path] = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    return list(reversed(missing))
