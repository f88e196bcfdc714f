"""Carrying out a plan, or showing it as a diff for `--dry-run`."""

from __future__ import annotations

import difflib
import sys
from typing import Any

from addon.setup.files import write_atomic
from addon.setup.gitconfig import git_set
from addon.setup.model import PROG, Plan
from addon.setup.records import save_records
from addon.setup.redact import _redact_key


def apply(plan: Plan, records_before: dict[str, Any]) -> None:
    """Make the planned changes: files atomically, then git, then the record."""
    for change in plan.files:
        if change.new is None:
            change.path.unlink(missing_ok=True)
            for directory in change.remove_dirs:
                try:
                    directory.rmdir()
                except OSError:
                    break  # not empty: the user put something there
        else:
            for directory in change.make_dirs:
                directory.mkdir(exist_ok=True)
            write_atomic(change.path, change.new.encode("utf-8"))
    for git_change in plan.git:
        git_set(git_change.key, git_change.new)
    if plan.records != records_before:
        save_records(plan.records)


def print_dry_run(plan: Plan) -> None:
    """Show every change as a unified diff (and git commands) without making any."""
    for change in plan.files:
        old = (change.old or "").splitlines(keepends=True)
        new = (change.new or "").splitlines(keepends=True)
        before = str(change.path) if change.old is not None else "/dev/null"
        after = str(change.path) if change.new is not None else "/dev/null"
        for line in difflib.unified_diff(old, new, before, after):
            sys.stdout.write(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    for git_change in plan.git:
        print(f"# would run: git config --global --unset-all {_redact_key(git_change.key)}")
        for value in git_change.new:
            print(f"# would run: git config --global --add {_redact_key(git_change.key)} {value}")
    print(f"{PROG}: dry run, nothing written" if plan.files or plan.git else f"{PROG}: nothing to change")
