"""`cargo-vouch setup`: point Cargo (and, for git indexes fetched by the git CLI, git) at the
local proxy and its CA, and with `--remove` take exactly that back.

Every change is planned first and then either shown as a diff (`--dry-run`) or applied with
atomic writes. What setup changed is recorded under `vouch_home()/setup/` so `--remove` can
restore a file byte for byte while it is untouched, or undo only setup's own keys once the
user has edited it. The record holds only what setup replaced (a reverse patch of the lines it
touched), never a copy of the whole file, so a token elsewhere in a Cargo config is not copied.
"""

from __future__ import annotations

from addon.setup.cli import add_parser, run
from addon.setup.records import records_path

__all__ = ["add_parser", "records_path", "run"]
