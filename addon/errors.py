"""The one root of the errors a user acts on.

Every such error is one line that names the file, key, request or command and what to do,
and carries the exit status of the command that met it; `cli.main` catches them once.
"""

from __future__ import annotations


class VouchError(Exception):
    """A problem to report in one line; the command that meets it exits with `exit_code`."""

    exit_code = 1


class UsageError(VouchError):
    """The command line itself is wrong (argparse's own status for bad usage)."""

    exit_code = 2
