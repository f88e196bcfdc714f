"""The `setup` subcommand: its arguments, and running it from plan to apply (or to the diff
that `--dry-run` shows instead).

Every change is planned first and then either shown as a diff (`--dry-run`) or applied with
atomic writes. What setup changed is recorded under `vouch_home()/setup/` so `--remove` can
restore a file byte for byte while it is untouched, or undo only setup's own keys once the
user has edited it. The record holds only what setup replaced (a reverse patch of the lines it
touched), never a copy of the whole file, so a token elsewhere in a Cargo config is not copied.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from functools import partial
from pathlib import Path
from typing import Any

from cargo_vouch import cargo_config, paths
from cargo_vouch.ca.authority import NO_CA_YET, ensure_ca
from cargo_vouch.ca.files import edit_atomic
from cargo_vouch.cargo_config import CargoConfigError, read_text, redact_url
from cargo_vouch.cli import index_hosts
from cargo_vouch.cli.setup.gitconfig import git_get_all, git_set
from cargo_vouch.cli.setup.plan import PROG, FileWrite, GitWrite, Plan, SetupError, redact_key
from cargo_vouch.cli.setup.plan_remove import plan_remove
from cargo_vouch.cli.setup.plan_setup import plan_setup
from cargo_vouch.cli.setup.records import load_records, records_path, save_records, setup_lock
from cargo_vouch.config import REGISTRY_NAME, RegistryConfig, load_config, parse_listen, registry_hosts
from cargo_vouch.errors import VouchError


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
    """`cargo-vouch setup`: plan, then show (`--dry-run`) or apply; errors reach `main`."""
    registry: str | None = args.registry
    remove: bool = args.remove
    if registry is None and not remove:
        raise SetupError(
            "--registry NAME is required: the name of a registry in Cargo's [registries]", 2
        )
    if registry is not None and not REGISTRY_NAME.fullmatch(registry):
        raise SetupError(f"--registry {registry!r}: use letters, digits, '-' and '_' only", 2)
    manifest_dir = args.manifest_dir
    cwd = Path(manifest_dir) if manifest_dir else Path.cwd()
    if not cwd.is_dir():
        raise SetupError(f"--manifest-dir {manifest_dir}: no such directory", 2)
    cwd = cwd.resolve()
    if args.global_scope:
        cargo_dir = cargo_config.cargo_home().absolute()
    else:
        cargo_dir = cwd / ".cargo"
        for link in (cargo_dir, cargo_dir / "config.toml", cargo_dir / "config"):
            # A cloned repository's `.cargo/config.toml -> ../../.cargo/config.toml` would
            # have setup edit the user's global config while it names the project's.
            if not link.is_symlink():
                continue
            try:
                points_to = link.resolve(strict=False)
            except (OSError, RuntimeError):  # a loop of links
                raise SetupError(f"{link} is a link that leads nowhere (a loop); fix or remove it") from None
            if not points_to.is_relative_to(cwd):
                raise SetupError(f"{link} is a link to {points_to}, outside {cwd}; setup edits only the "
                                 "project's own Cargo config (use --global for $CARGO_HOME/config.toml)")
    config_file, _ = paths.config_path(args.config)
    with setup_lock():
        records = load_records()
        if remove:
            plan = plan_remove(_recorded_target(cargo_dir, records), registry, records)
        else:
            assert registry is not None
            plan = plan_setup(
                registry=registry,
                cwd=cwd,
                target=_target_file(cargo_dir),
                vouch_config=config_file.absolute(),
                listen=args.listen,
                records=records,
                hosts_of=partial(hosts_of, config_file, args.dry_run),
            )

        for note in plan.notes:
            print(note, file=sys.stderr)
        if args.dry_run:
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
            if reason != NO_CA_YET:
                print("  restart a running 'cargo vouch proxy' (or mitmdump): it still signs with the old CA, "
                      "which Cargo no longer trusts")
    return 0


def hosts_of(config_file: Path, dry_run: bool, registry: str, index: str) -> tuple[list[str], list[str]]:
    """The `prefixes` the registry's config.json needs (its dl or api on another host), read
    once through the registry's provider; notes for what is not read or not added.

    The provider's token goes only to the index the cargo-vouch config names for the
    registry, or, when setup adds the registry, to the index it adds, and then not in a
    dry run: until the user chose to configure that index, no token goes there. An index
    that differs from the configured one gets nothing (the plan warns about it)."""
    try:
        config = load_config(config_file)
    except VouchError:
        config = None
    known = config.registries.get(registry) if config else None
    if known is not None and known.index.rstrip("/") != index.rstrip("/"):
        return [], []
    if known is None and dry_run:
        return [], [
            f"note: config.json of '{registry}' not read in a dry run: that takes a token, and "
            f"{redact_url(index)} is not in the cargo-vouch config yet; setup without --dry-run reads it "
            "and adds the hosts its dl and api need"
        ]
    entry = known or RegistryConfig(registry, index)
    listen = config.proxy.listen if config else parse_listen(paths.DEFAULT_LISTEN)
    upstream_ca = config.proxy.upstream_ca if config else None
    hidden = config.secret_variables if config else frozenset()
    try:
        data = index_hosts.read_config_json(entry, upstream_ca, listen, hidden)
    except index_hosts.Unreadable as exc:
        return [], [
            f"note: could not read the registry's config.json ({exc}); if its dl or api is on another host "
            "than the index, add that host to prefixes ('cargo vouch doctor' names it once it can read it)"
        ]
    found, problems = index_hosts.uncovered(entry, data, config.registries.values() if config else ())
    return [uncovered.prefix for uncovered in found], [f"note: {problem}" for problem in problems]


def _target_file(cargo_dir: Path) -> Path:
    """The file Cargo reads in `cargo_dir`: a legacy `config` if present, else `config.toml`."""
    return cargo_config.config_file_in(cargo_dir) or cargo_dir / "config.toml"


def _recorded_target(cargo_dir: Path, records: dict[str, Any]) -> Path:
    """For `--remove`: the file setup recorded in `cargo_dir`, whichever name it had."""
    for name in ("config", "config.toml"):
        if str(cargo_dir / name) in records["targets"]:
            return cargo_dir / name
    return _target_file(cargo_dir)


def apply(plan: Plan, records_before: dict[str, Any]) -> None:
    """Make the planned changes: the record first (so that `--remove` can undo whatever
    follows, even after a crash), then the files atomically, then git. A file that changed
    since it was planned stops everything before anything is written: setup may have
    waited on the provider meanwhile, and writing the plan would lose that edit. A step
    that fails takes back the ones before it."""
    for change in plan.files:
        if read_text(change.path) != change.old:
            raise SetupError(f"{change.path} changed while setup ran; nothing was written: run setup again")
    record_existed = records_path().exists()
    if plan.records != records_before:
        save_records(plan.records)
    done_files: list[FileWrite] = []
    done_git: list[GitWrite] = []
    try:
        for change in plan.files:
            done_files.append(change)
            _write(change, change.new)
        for git_change in plan.git:
            done_git.append(git_change)  # before: a failed git_set may have unset the old values
            git_set(git_change.key, git_change.new)
    except (OSError, SetupError, CargoConfigError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        undone = _take_back(done_files, done_git)
        if undone and plan.records != records_before:
            if record_existed:
                save_records(records_before)
            else:
                records_path().unlink(missing_ok=True)
        kept = "the edits before it were taken back" if undone else (
            "some edits before it could not be taken back: 'cargo vouch setup --remove' undoes them")
        raise SetupError(f"{reason}; {kept}") from None


def _write(change: FileWrite, text: str | None) -> None:
    """`change.path` holds `text` (or, for None, is gone, with the folders it alone filled)."""
    path = change.path
    if text is None:
        path.unlink(missing_ok=True)
        for directory in change.remove_dirs:
            try:
                directory.rmdir()
            except OSError:
                break  # not empty: the user put something there
    else:
        for directory in change.make_dirs:
            directory.mkdir(exist_ok=True)
        edit_atomic(path, text.encode("utf-8"))


def _take_back(files: list[FileWrite], git: list[GitWrite]) -> bool:
    """Undo what `apply` did before a step failed, last first; whether all of it was."""
    complete = True
    for git_change in reversed(git):
        try:
            now = git_get_all(git_change.key)
            if now == git_change.old:
                continue  # unchanged: git failed before changing it
            if now not in (git_change.new, []):
                complete = False  # changed since: a value set meanwhile is not ours to undo
                continue
            # What setup wrote, or unset by a git_set that failed before adding it back.
            git_set(git_change.key, git_change.old)
        except SetupError:
            complete = False
    for change in reversed(files):
        try:
            if read_text(change.path) != change.new:
                complete = False  # changed since setup wrote it: that edit is not ours to undo
            else:
                _write(change, change.old)
        except (OSError, CargoConfigError):
            complete = False
    return complete


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
        print(f"# would run: git config --global --unset-all {redact_key(git_change.key)}")
        for value in git_change.new:
            print(f"# would run: git config --global --add {redact_key(git_change.key)} {value}")
    print(f"{PROG}: dry run, nothing written" if plan.files or plan.git else f"{PROG}: nothing to change")
