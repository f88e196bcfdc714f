"""`cargo vouch enroll`: a FIDO2 credential for the writes of registries with `touch = true`."""

from __future__ import annotations

import argparse

from cargo_vouch.touch import device
from cargo_vouch.touch.enrollment import TouchError, enrollment_path, load_enrollment, save_enrollment


def cmd_enroll(args: argparse.Namespace) -> int:
    path = enrollment_path(args.config)
    if not args.force:
        existing = load_enrollment(path)
        if existing is not None:
            raise TouchError(
                f"{path} already enrolls credential {existing.short_id()}; "
                "run 'cargo vouch enroll --force' to replace it"
            )
    key = device.open_device()
    try:
        print("touch your key to enroll it for cargo-vouch", flush=True)
        enrollment = device.enroll(key)
    finally:
        key.close()
    save_enrollment(enrollment, path)
    print(f"enrolled credential {enrollment.short_id()} in {path}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `enroll`; `--config` is SUPPRESSed so a top-level `--config` is not overwritten."""
    parser = subparsers.add_parser(
        "enroll",
        help="enroll a FIDO2 security key for registries with touch = true",
        description="Create a credential on a FIDO2 security key; writes to registries with "
        "touch = true then need a touch of that key. Stores only public data, beside the config file.",
    )
    parser.add_argument("--force", action="store_true", help="replace an existing enrollment")
    parser.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help="cargo-vouch config file")
    parser.set_defaults(func=cmd_enroll)
