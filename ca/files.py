"""Writing files so that nothing is ever half-written, and keys are never readable by others.

The project's one set of such primitives: the CA's key and bundles, setup's edits of
Cargo's and cargo-vouch's config files, setup's record and the FIDO2 enrollment all use it.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Replace `path` so readers see the old file or the new one, never half of one.

    The mode is set before any byte is written, so a key is never readable by others.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)  # the rename itself survives a crash
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def write_if_changed(path: Path, data: bytes, mode: int) -> None:
    """For files derived at every start (bundles): no write when nothing changed."""
    if not path.exists() or path.read_bytes() != data:
        write_atomic(path, data, mode)


def edit_atomic(path: Path, data: bytes, new_mode: int | None = None) -> None:
    """Replace a user's file atomically, as the user would expect of an edit: the mode of an
    existing file is kept (`new_mode`, else the umask's, for a new one), and a symlink is
    followed so the link itself survives."""
    real = path.resolve() if path.is_symlink() else path
    try:
        mode = stat.S_IMODE(real.stat().st_mode)
    except FileNotFoundError:
        mode = new_mode if new_mode is not None else 0o666 & ~_umask()
    write_atomic(real, data, mode)


def missing_dirs(directory: Path) -> list[Path]:
    """Directories that must be created for `directory` to exist, outermost first."""
    missing: list[Path] = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    return list(reversed(missing))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
