"""`cargo-vouch` (also `cargo vouch`, by Cargo's external-subcommand rule).

Each subcommand lives in a module of its own and registers its arguments; this module
parses, dispatches, and turns the one error root (`VouchError`) into one line on stderr
and the error's exit status, in one place.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import signal
import sys
from pathlib import Path

from cargo_vouch.errors import VouchError

PROG = "cargo-vouch"
#: Each subcommand's module, in `--help` order. Only the one being run is imported: `run`
#: starts every CI job, and the others' imports (FIDO, doctor's checks) would cost it time.
COMMANDS = {
    "proxy": "cargo_vouch.cli.proxy",
    "run": "cargo_vouch.cli.run",
    "setup": "cargo_vouch.cli.setup.command",
    "doctor": "cargo_vouch.cli.doctor",
    "enroll": "cargo_vouch.cli.enroll",
    "ca": "cargo_vouch.cli.ca",
}


def addon_path() -> Path:
    """The installed mitmproxy script, for `mitmdump -s "$(cargo vouch addon-path)"`."""
    return Path(__file__).resolve().parent.parent / "vouch_addon.py"


def cmd_addon_path(args: argparse.Namespace) -> int:
    print(addon_path())
    return 0


def requested_command(argv: list[str]) -> str | None:
    """The subcommand named on the command line, if it is one of ours."""
    words = iter(argv)
    for word in words:
        if word == "--config":
            next(words, None)
        elif not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser for every subcommand, or for `only` (the others' modules not imported)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Short-lived Vouch tokens on every request Cargo makes to a private registry.",
    )
    parser.add_argument("--config", help="cargo-vouch config file (default: $CARGO_VOUCH_CONFIG, then the per-user one)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        if only in (None, name):
            importlib.import_module(module).add_parser(commands)
    addon = commands.add_parser(
        "addon-path", help="print the path of the mitmproxy script: mitmdump -s \"$(cargo vouch addon-path)\""
    )
    addon.set_defaults(func=cmd_addon_path)
    return parser


def without_script_directory() -> None:
    """Python looks for modules first in the script's folder (the console script's `bin`,
    or for `python -m` the working directory), before site-packages: a folder a build can
    write to, or a cloned repository's root. Nothing of ours is there; as with `python -P`,
    it is not searched."""
    if not sys.flags.safe_path and sys.path:
        del sys.path[0]


def main(argv: list[str] | None = None) -> int:
    try:
        return run_command(argv)
    except KeyboardInterrupt:  # Ctrl-C, as a shell reports it; files are only ever replaced whole
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT


def run_command(argv: list[str] | None) -> int:
    if argv is None:  # run as a program, not called
        without_script_directory()
    argv = list(sys.argv[1:] if argv is None else argv)
    # Run as `cargo vouch …`, Cargo passes the subcommand name first.
    if argv[:1] == ["vouch"]:
        argv = argv[1:]
    # Importing the command's module allocates much and frees almost nothing: collecting
    # meanwhile only costs start-up time (`run` starts every CI job).
    gc.disable()
    try:
        args = build_parser(requested_command(argv)).parse_args(argv)
    finally:
        gc.enable()
    try:
        return int(args.func(args) or 0)
    except VouchError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # a file we were told to read or write: name it, no traceback
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"{PROG}: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
