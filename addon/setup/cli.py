"""The `setup` subcommand: its arguments, and running it from plan to apply."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from addon import cargo_config, paths
from addon.cargo_config import CargoConfigError
from addon.config import ConfigError, load_config, registry_hosts
from addon.setup.apply import apply, print_dry_run
from addon.setup.model import PROG, SetupError
from addon.setup.plan_remove import plan_remove
from addon.setup.plan_setup import plan_setup
from addon.setup.records import load_records
from ca.authority import ensure_ca

REGISTRY_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `setup`; `--config` is SUPPRESSed so a top-level `--config` is not overwritten."""
    parser = subparsers.add_parser(
        "setup",
        help="point Cargo at the proxy in a project's or the global Cargo config",
        description="Write [http] proxy and cainfo into Cargo's config so Cargo uses the "
        "cargo-vouch proxy; --remove takes back exactly what setup added.",
    )
    parser.add_argument("--registry", metavar="NAME", help="registry name from Cargo's [registries]")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--manifest-dir", metavar="DIR", help="edit DIR/.cargo/config.toml (default: current directory)"
    )
    scope.add_argument(
        "--global", dest="global_scope", action="store_true", help="edit $CARGO_HOME/config.toml"
    )
    parser.add_argument(
        "--listen",
        metavar="ADDR",
        help=f"proxy address (default: [proxy] listen from the config, else {paths.DEFAULT_LISTEN})",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the diff, write nothing")
    parser.add_argument("--remove", action="store_true", help="take back what setup added")
    parser.add_argument(
        "--config", metavar="PATH", default=argparse.SUPPRESS, help="cargo-vouch config file"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Entry point for `cargo-vouch setup`; returns the exit status."""
    try:
        return _run(args)
    except SetupError as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return err.code
    except (CargoConfigError, ConfigError) as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        where = f"{err.filename}: " if err.filename else ""
        print(f"{PROG}: {where}{err.strerror or err}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    registry: str | None = getattr(args, "registry", None)
    remove = bool(getattr(args, "remove", False))
    if registry is None and not remove:
        raise SetupError(
            "--registry NAME is required: the name of a registry in Cargo's [registries]", 2
        )
    if registry is not None and not REGISTRY_NAME.match(registry):
        raise SetupError(f"--registry {registry!r}: use letters, digits, '-' and '_' only", 2)
    manifest_dir = getattr(args, "manifest_dir", None)
    cwd = Path(manifest_dir) if manifest_dir else Path.cwd()
    if not cwd.is_dir():
        raise SetupError(f"--manifest-dir {manifest_dir}: no such directory", 2)
    cwd = cwd.resolve()
    if getattr(args, "global_scope", False):
        cargo_dir = cargo_config.cargo_home().absolute()
    else:
        cargo_dir = cwd / ".cargo"
    records = load_records()

    if remove:
        plan = plan_remove(_recorded_target(cargo_dir, records), registry, records)
    else:
        assert registry is not None
        config_file, _ = paths.config_path(getattr(args, "config", None))
        plan = plan_setup(
            registry=registry,
            cwd=cwd,
            target=_target_file(cargo_dir),
            vouch_config=config_file.absolute(),
            listen=getattr(args, "listen", None),
            records=records,
        )

    for note in plan.notes:
        print(note, file=sys.stderr)
    if getattr(args, "dry_run", False):
        print_dry_run(plan)
        return 0
    apply(plan, records)
    for line in plan.done:
        print(line)
    if not remove:
        # Cargo's cainfo must name a file that exists before the proxy first starts.
        ca, reason = ensure_ca(paths.ca_dir(), registry_hosts(load_config(config_file)))
        if reason:
            print(f"  issued the CA ({reason}): {ca.cert}")
    return 0


def _target_file(cargo_dir: Path) -> Path:
    """The file Cargo reads in `cargo_dir`: a legacy `config` if present, else `config.toml`."""
    return cargo_config.config_file_in(cargo_dir) or cargo_dir / "config.toml"


def _recorded_target(cargo_dir: Path, records: dict[str, Any]) -> Path:
    """For `--remove`: the file setup recorded in `cargo_dir`, whichever name it had."""
    for name in ("config", "config.toml"):
        if str(cargo_dir / name) in records["targets"]:
            return cargo_dir / name
    return _target_file(cargo_dir)
