"""`cargo-vouch` (also `cargo vouch`, by Cargo's external-subcommand rule).

Each subcommand lives in a module of its own and registers its arguments; this module
parses, dispatches, and turns the one error root (`VouchError`) into one line on stderr
and the error's exit status, in one place.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cargo_vouch.cli import ca, doctor, enroll, proxy, run
from cargo_vouch.cli.setup import command as setup
from cargo_vouch.errors import VouchError

PROG = "cargo-vouch"


def addon_path() -> Path:
    """The installed mitmproxy script, for `mitmdump -s "$(cargo vouch addon-path)"`."""
    return Path(__file__).resolve().parent.parent / "vouch_addon.py"


def cmd_addon_path(args: argparse.Namespace) -> int:
    print(addon_path())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Short-lived Vouch tokens on every request Cargo makes to a private registry.",
    )
    parser.add_argument("--config", help="cargo-vouch config file (default: $CARGO_VOUCH_CONFIG, then the per-user one)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    proxy.add_parser(commands)
    run.add_parser(commands)
    setup.add_parser(commands)
    doctor.add_parser(commands)
    enroll.add_parser(commands)
    ca.add_parser(commands)
    addon = commands.add_parser(
        "addon-path", help="print the path of the mitmproxy script: mitmdump -s \"$(cargo vouch addon-path)\""
    )
    addon.set_defaults(func=cmd_addon_path)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Run as `cargo vouch …`, Cargo passes the subcommand name first.
    if argv[:1] == ["vouch"]:
        argv = argv[1:]
    args = build_parser().parse_args(argv)
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
