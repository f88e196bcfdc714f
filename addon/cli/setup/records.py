"""The setup record: what setup changed, kept as reverse patches so `--remove` can undo it."""

from __future__ import annotations

import contextlib
import difflib
import fcntl
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cargo_vouch import paths
from cargo_vouch.ca.files import edit_atomic
from cargo_vouch.cli.setup.plan import PROG, SetupError

RECORD_VERSION = 1
#: How long setup waits for another one (which may itself wait on a provider, a touch).
LOCK_WAIT_SECONDS = 120
LOCK_POLL_SECONDS = 0.1


def records_path() -> Path:
    return paths.vouch_home() / "setup" / "records.json"


@contextlib.contextmanager
def setup_lock() -> Iterator[None]:
    """One setup (or --remove) at a time, from reading the record to writing it: two at once
    would each write the record and config they read, losing the other's changes."""
    directory = records_path().parent
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)  # the folder itself: no lock file to leave
    try:
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        said = False
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise SetupError(f"another cargo-vouch setup has held {directory} for over "
                                     f"{LOCK_WAIT_SECONDS} s; nothing was written: run setup again once it ends") from None
                if not said:
                    print(f"{PROG}: waiting for another setup to finish ({directory})", file=sys.stderr)
                    said = True
                time.sleep(LOCK_POLL_SECONDS)  # flock has no timeout of its own
        yield
    finally:
        os.close(descriptor)


def load_records() -> dict[str, Any]:
    """What earlier setups changed: targets (Cargo files), vouch (config entries), git keys."""
    path = records_path()
    empty: dict[str, Any] = {"version": RECORD_VERSION, "targets": {}, "vouch": {}, "git": {}}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return empty
    except (ValueError, UnicodeDecodeError):
        raise SetupError(f"{path}: unreadable setup record; move it away to start afresh") from None
    if not isinstance(data, dict) or data.get("version") != RECORD_VERSION:
        raise SetupError(f"{path}: unknown setup record version; move it away to start afresh")
    for key in ("targets", "vouch", "git"):
        data.setdefault(key, {})
    return data


def save_records(records: dict[str, Any]) -> None:
    path = records_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = json.dumps(records, indent=2, sort_keys=True) + "\n"
    edit_atomic(path, text.encode("utf-8"), new_mode=0o600)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _reverse_patch(written: str, original: str) -> list[list[Any]]:
    """Edits that turn `written` back into `original`: only the lines setup replaced."""
    a = written.splitlines(keepends=True)
    b = original.splitlines(keepends=True)
    opcodes = difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes()
    return [[i1, i2, b[j1:j2]] for tag, i1, i2, j1, j2 in opcodes if tag != "equal"]


def _apply_patch(written: str, patch: list[list[Any]]) -> str:
    lines = written.splitlines(keepends=True)
    out: list[str] = []
    pos = 0
    for start, end, replacement in patch:
        out += lines[pos:start] + replacement
        pos = end
    return "".join(out + lines[pos:])


def _file_record(written: str, original: str | None, created_dirs: list[str]) -> dict[str, Any]:
    return {
        "absent": original is None,
        "patch": _reverse_patch(written, original or ""),
        "sha256": _sha(written),
        "created_dirs": created_dirs if original is None else [],
    }


def original_text(record: dict[str, Any] | None, current: str | None) -> tuple[bool, str | None]:
    """(known, original text or None if it was absent), known only while the file is untouched."""
    if record is None or record.get("sha256") is None or current is None:
        return False, None
    if _sha(current) != record["sha256"]:
        return False, None
    return True, None if record["absent"] else _apply_patch(current, record["patch"])


def rebase(
    record: dict[str, Any] | None, current: str | None, new: str, created: list[Path]
) -> dict[str, Any]:
    """The file record after writing `new` over `current`, still pointing at the first original."""
    if record is None:
        return _file_record(new, current, [str(d) for d in reversed(created)])
    known, original = original_text(record, current)
    if not known:  # edited by the user: only a key-by-key undo is possible from now on
        return {**record, "sha256": None, "patch": []}
    return _file_record(new, original, record.get("created_dirs", []))
