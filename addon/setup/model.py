"""What every part of `cargo-vouch setup` shares: the error it reports and the plan it builds."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROG = "cargo-vouch setup"


class SetupError(Exception):
    """A problem to report in one line; `code` is 2 for bad usage, 1 otherwise."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class FileWrite:
    """One file to write (`new`) or delete (`new is None`)."""

    path: Path
    old: str | None
    new: str | None
    make_dirs: list[Path] = field(default_factory=list)  # to create, outermost first
    remove_dirs: list[Path] = field(default_factory=list)  # to remove if empty, innermost first


@dataclass
class GitWrite:
    """One `git config --global` key and the full list of values it should end up with."""

    key: str
    old: list[str]
    new: list[str]


@dataclass
class Plan:
    records: dict[str, Any]
    files: list[FileWrite] = field(default_factory=list)
    git: list[GitWrite] = field(default_factory=list)
    done: list[str] = field(default_factory=list)  # summary for stdout
    notes: list[str] = field(default_factory=list)  # warnings for stderr
