"""`cargo-vouch setup`: point Cargo (and, for git indexes fetched by the git CLI, git) at the
local proxy and its CA, and with `--remove` take exactly that back.

Every change is planned first and then either shown as a diff (`--dry-run`) or applied with
atomic writes. What setup changed is recorded under `vouch_home()/setup/` so `--remove` can
restore a file byte for byte while it is untouched, or undo only setup's own keys once the
user has edited it. The record holds only what setup replaced (a reverse patch of the lines it
touched), never a copy of the whole file, so a token elsewhere in a Cargo config is not copied.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import hashlib
import ipaddress
import json
import os
import re
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import tomlkit
import tomlkit.items

from addon import cargo_config, paths
from addon.cargo_config import CargoConfigError, parse_toml, read_text
from addon.config import ConfigError, load_config, parse_listen, registry_hosts
from ca.authority import ensure_ca

PROG = "cargo-vouch setup"
REGISTRY_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
RECORD_VERSION = 1


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


# ---------------------------------------------------------------- command line


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


# ---------------------------------------------------------------- proxy address


def proxy_url(listen: str, source: str = "--listen") -> str:
    """`http://HOST:PORT` for Cargo's `http.proxy`; only loopback is allowed.

    The proxy holds registry tokens; listening beyond this machine would hand them out.
    """
    code = 2 if source == "--listen" else 1
    try:
        address = parse_listen(listen)
    except ValueError as exc:
        raise SetupError(f"{source} {listen!r}: {exc} (e.g. {paths.DEFAULT_LISTEN})", code) from None
    if address.port == 0:
        raise SetupError(f"{source} {listen!r}: Cargo needs a fixed port", code)
    return f"http://{address}"


# ---------------------------------------------------------------- records


def records_path() -> Path:
    return paths.vouch_home() / "setup" / "records.json"


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
    write_atomic(path, text.encode("utf-8"), new_mode=0o600)


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


def _original(record: dict[str, Any] | None, current: str | None) -> tuple[bool, str | None]:
    """(known, original text or None if it was absent), known only while the file is untouched."""
    if record is None or record.get("sha256") is None or current is None:
        return False, None
    if _sha(current) != record["sha256"]:
        return False, None
    return True, None if record["absent"] else _apply_patch(current, record["patch"])


def _rebase(
    record: dict[str, Any] | None, current: str | None, new: str, created: list[Path]
) -> dict[str, Any]:
    """The file record after writing `new` over `current`, still pointing at the first original."""
    if record is None:
        return _file_record(new, current, [str(d) for d in reversed(created)])
    known, original = _original(record, current)
    if not known:  # edited by the user: only a key-by-key undo is possible from now on
        return {**record, "sha256": None, "patch": []}
    return _file_record(new, original, record.get("created_dirs", []))


# ---------------------------------------------------------------- setup


def plan_setup(
    *,
    registry: str,
    cwd: Path,
    target: Path,
    vouch_config: Path,
    listen: str | None,
    records: dict[str, Any],
) -> Plan:
    """Work out every change `setup` makes, without making any."""
    plan = Plan(records=copy.deepcopy(records))
    found = cargo_config.registry_index(registry, cwd)
    if found is None:
        raise SetupError(
            f"registry '{registry}' is not defined in Cargo's config: add "
            f"[registries.{registry}] index = \"…\" to {cwd / '.cargo' / 'config.toml'} or "
            f"{cargo_config.cargo_home() / 'config.toml'} (or set "
            f"{cargo_config.env_name(f'registries.{registry}.index')})"
        )
    index: str = found.value
    vouch_text = read_text(vouch_config)
    vouch_doc = parse_toml(vouch_text or "", vouch_config)
    proxy = _choose_proxy(listen, vouch_doc, vouch_config, plan)
    ca = str(paths.ca_cert_path())

    changed_target = _plan_cargo_file(plan, target, registry, {"proxy": proxy, "cainfo": ca})
    changed_vouch = _plan_vouch_registry(plan, vouch_config, vouch_text, vouch_doc, registry, index)
    git_url = _git_index_url(index) if cargo_config.git_fetch_with_cli(cwd) else None
    changed_git = _plan_git(plan, registry, git_url, proxy, ca) if git_url else False

    targets = plan.records["targets"]
    entry = targets.get(str(target))
    if changed_target or changed_vouch or changed_git or entry is not None:
        entry = targets.setdefault(str(target), {"registries": [], "file": None, "keys": {}})
        if registry not in entry["registries"]:
            entry["registries"].append(registry)
    header = f"{PROG}: registry '{registry}' ({_redact(index)}) via {proxy}"
    if not plan.files and not plan.git:
        plan.done[:0] = [header, f"  already set up, nothing changed ({target})"]
    else:
        plan.done.insert(0, header)
    plan.notes += _env_warnings(registry, index, proxy, ca, bool(git_url))
    parts = urlsplit(index.removeprefix("sparse+"))
    if parts.scheme != "https":
        plan.notes.append(
            f"warning: index {_redact(index)} is not https; cargo-vouch only authenticates "
            "https registries"
        )
    if parts.username is not None or parts.password is not None:
        plan.notes.append(
            f"warning: index URL of '{registry}' carries a user name or password, which the proxy "
            "refuses; remove it from the URL in Cargo's config (the proxy supplies credentials)"
        )
    return plan


def _choose_proxy(listen: str | None, vouch_doc: Any, vouch_config: Path, plan: Plan) -> str:
    """--listen, else the proxy's own `[proxy] listen`, else the default: where the proxy is."""
    proxy_table = vouch_doc.get("proxy")
    configured = proxy_table.get("listen") if isinstance(proxy_table, dict) else None
    if listen is not None:
        url = proxy_url(listen)
        if isinstance(configured, str) and proxy_url(configured, f"{vouch_config}: [proxy] listen") != url:
            plan.notes.append(
                f"warning: --listen {listen} differs from [proxy] listen = {configured!r} in "
                f"{vouch_config}; start the proxy with --listen {listen} or run setup again"
            )
        return url
    if configured is not None:
        if not isinstance(configured, str):
            raise SetupError(f"{vouch_config}: [proxy] listen must be a string like {paths.DEFAULT_LISTEN!r}")
        return proxy_url(configured, f"{vouch_config}: [proxy] listen")
    return proxy_url(paths.DEFAULT_LISTEN)


def _plan_cargo_file(plan: Plan, target: Path, registry: str, values: dict[str, str]) -> bool:
    """Set `[http] proxy` and `cainfo` in Cargo's config, keeping everything else."""
    text = read_text(target)
    doc = parse_toml(text or "", target)
    previous = _set_http(doc, target, values)
    if not previous:
        return False
    new = _same_newlines(text or "", tomlkit.dumps(doc))
    created = _missing_dirs(target.parent)
    entry = plan.records["targets"].setdefault(
        str(target), {"registries": [], "file": None, "keys": {}}
    )
    entry["file"] = _rebase(entry["file"], text, new, created)
    for key, old in previous.items():
        kept = entry["keys"].get(key, {"previous": old})["previous"]
        entry["keys"][key] = {"value": values[key], "previous": kept}
    plan.files.append(FileWrite(target, text, new, make_dirs=created))
    verb = "created" if text is None else "updated"
    plan.done.append(f"  {verb} {target}: " + ", ".join(f"http.{k}" for k in previous))
    return True


def _set_http(doc: Any, path: Path, values: dict[str, str]) -> dict[str, Any]:
    """Set keys under `http` in place (table, dotted keys or inline table alike).

    Returns the keys that changed with their previous values (None when absent).
    """
    if "http" not in doc:
        doc["http"] = tomlkit.table()
    elif not isinstance(doc["http"], dict):
        raise SetupError(f"{path}: 'http' must be a table, not {_plain(doc['http'])!r}; fix the file")
    previous: dict[str, Any] = {}
    for key, value in values.items():
        http = doc["http"]  # fetched again: tomlkit's dotted-key proxy goes stale after edits
        old = _plain(http[key]) if key in http else None
        if old != value:
            previous[key] = old
            http[key] = value
    return previous


def _plan_vouch_registry(
    plan: Plan, path: Path, text: str | None, doc: Any, registry: str, index: str
) -> bool:
    """Add `[registries.NAME] index` to the cargo-vouch config unless it is already there."""
    registries = doc.get("registries")
    if registries is not None and not isinstance(registries, dict):
        raise SetupError(f"{path}: 'registries' must be a table; fix the file")
    if registries is not None and registry in registries:
        entry = registries[registry]
        existing = entry.get("index") if isinstance(entry, dict) else None
        if not isinstance(existing, str) or existing.rstrip("/") != index.rstrip("/"):
            plan.notes.append(
                f"warning: {path}: [registries.{registry}] index = {_plain(existing)!r} differs "
                f"from Cargo's {_redact(index)!r}; left as is, make them the same"
            )
        return False
    inline = isinstance(registries, tomlkit.items.InlineTable)
    table = tomlkit.inline_table() if inline else tomlkit.table()
    table["index"] = index
    if registries is None:
        doc["registries"] = tomlkit.table(is_super_table=True)
    doc["registries"][registry] = table
    new = _same_newlines(text or "", tomlkit.dumps(doc))
    created = _missing_dirs(path.parent)
    entry = plan.records["vouch"].setdefault(str(path), {"registries": {}, "file": None})
    entry["file"] = _rebase(entry["file"], text, new, created)
    entry["registries"][registry] = index
    plan.files.append(FileWrite(path, text, new, make_dirs=created))
    plan.done.append(f"  added [registries.{registry}] to {path}")
    return True


def _git_index_url(index: str) -> str | None:
    """The URL git fetches for a git index over http(s); None for sparse or ssh indexes."""
    if index.startswith("sparse+"):
        return None
    return index if urlsplit(index).scheme in ("http", "https") else None


def _plan_git(plan: Plan, registry: str, url: str, proxy: str, ca: str) -> bool:
    """URL-scoped git settings, so only the registry's fetches go through the proxy."""
    changed = False
    for var, value in (("proxy", proxy), ("sslCAInfo", ca)):
        key = f"http.{url}.{var}"
        current = git_get_all(key)
        if current == [value]:
            continue
        earlier = plan.records["git"].get(key)
        plan.records["git"][key] = {
            "registry": registry,
            "value": value,
            "previous": earlier["previous"] if earlier else current,
        }
        plan.git.append(GitWrite(key, current, [value]))
        plan.done.append(f"  set git config --global {_redact_key(key)}")
        changed = True
    return changed


# ---------------------------------------------------------------- remove


def plan_remove(target: Path, registry: str | None, records: dict[str, Any]) -> Plan:
    """Work out how to take back what setup did for `target` (one registry, or all)."""
    plan = Plan(records=copy.deepcopy(records))
    targets = plan.records["targets"]
    entry = targets.get(str(target))
    if entry is None:
        plan.done.append(f"{PROG}: nothing to remove: no setup recorded for {target}")
        return plan
    if registry is not None and registry not in entry["registries"]:
        names = ", ".join(entry["registries"]) or "none"
        raise SetupError(
            f"{target} was not set up for registry '{registry}' (recorded: {names}); "
            "run --remove without --registry to take back everything"
        )
    removing = [registry] if registry else list(entry["registries"])
    plan.done.append(f"{PROG}: removing setup for {', '.join(repr(n) for n in removing)}")
    entry["registries"] = [r for r in entry["registries"] if r not in removing]
    if entry["registries"]:
        plan.done.append(f"  kept {target}: still set up for {', '.join(entry['registries'])}")
    else:
        _undo_cargo_file(plan, target, entry)
        del targets[str(target)]
    for name in removing:
        users = [t for t, e in targets.items() if name in e["registries"]]
        if users:
            plan.done.append(f"  kept registry '{name}' in cargo-vouch config and git: still used by {users[0]}")
            continue
        _undo_vouch_registry(plan, name)
        _undo_git(plan, name)
    return plan


def _undo_cargo_file(plan: Plan, target: Path, entry: dict[str, Any]) -> None:
    text = read_text(target)
    known, original = _original(entry["file"], text)
    if known:
        _restore(plan, target, text, original, entry["file"])
        return
    if text is None:
        if entry["keys"]:
            plan.done.append(f"  {target} no longer exists; nothing to take back")
        return
    doc = parse_toml(text, target)
    undone, kept = _unset_http(doc, entry["keys"])
    for key in kept:
        plan.done.append(f"  left http.{key} in {target}: it was changed after setup")
    if undone:
        new = _tidy_end(_same_newlines(text, tomlkit.dumps(doc)))
        plan.files.append(FileWrite(target, text, new))
        plan.done.append(
            f"  {target} was edited after setup: took back only "
            + ", ".join(f"http.{k}" for k in undone)
        )


def _unset_http(doc: Any, keys: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Put back the previous values of the `http` keys setup set, where they still hold setup's."""
    undone: list[str] = []
    kept: list[str] = []
    for key, rec in keys.items():
        http = doc.get("http")
        current = _plain(http[key]) if isinstance(http, dict) and key in http else None
        if current != rec["value"]:
            if current is not None:
                kept.append(key)
            continue
        if rec["previous"] is None:
            del doc["http"][key]
        else:
            doc["http"][key] = rec["previous"]
        undone.append(key)
    if "http" in doc and isinstance(doc["http"], dict) and not doc["http"]:
        del doc["http"]
    return undone, kept


def _undo_vouch_registry(plan: Plan, name: str) -> None:
    for key, entry in list(plan.records["vouch"].items()):
        if name not in entry["registries"]:
            continue
        index = entry["registries"].pop(name)
        path = Path(key)
        text = read_text(path)
        known, original = _original(entry["file"], text)
        if known and not entry["registries"]:
            _restore(plan, path, text, original, entry["file"])
        elif text is not None:
            _remove_vouch_entry(plan, path, text, name, index, entry)
        if not entry["registries"]:
            del plan.records["vouch"][key]


def _remove_vouch_entry(
    plan: Plan, path: Path, text: str, name: str, index: str, entry: dict[str, Any]
) -> None:
    """Delete `[registries.NAME]` if it is still exactly what setup added."""
    doc = parse_toml(text, path)
    registries = doc.get("registries")
    table = registries.get(name) if isinstance(registries, dict) else None
    if table is None:
        return
    if _plain(table) != {"index": index}:
        plan.done.append(f"  left [registries.{name}] in {path}: it was edited after setup")
        return
    del doc["registries"][name]
    if not doc["registries"]:
        del doc["registries"]
    new = _tidy_end(_same_newlines(text, tomlkit.dumps(doc)))
    entry["file"] = _rebase(entry["file"], text, new, [])
    plan.files.append(FileWrite(path, text, new))
    plan.done.append(f"  removed [registries.{name}] from {path}")


def _undo_git(plan: Plan, name: str) -> None:
    for key, rec in list(plan.records["git"].items()):
        if rec["registry"] != name:
            continue
        del plan.records["git"][key]
        current = git_get_all(key)
        if current != [rec["value"]]:
            if current:
                plan.done.append(f"  left git config {_redact_key(key)}: it was changed after setup")
            continue
        plan.git.append(GitWrite(key, current, list(rec["previous"])))
        verb = "restored" if rec["previous"] else "unset"
        plan.done.append(f"  {verb} git config --global {_redact_key(key)}")


def _restore(
    plan: Plan, path: Path, current: str | None, original: str | None, record: dict[str, Any]
) -> None:
    """Put back the exact original bytes, or delete a file (and directories) setup created."""
    if original is None:
        dirs = [Path(d) for d in record.get("created_dirs", [])]
        plan.files.append(FileWrite(path, current, None, remove_dirs=dirs))
        plan.done.append(f"  deleted {path} (setup had created it)")
    elif original != current:
        plan.files.append(FileWrite(path, current, original))
        plan.done.append(f"  restored {path} as it was before setup")


# ---------------------------------------------------------------- environment


def _env_warnings(registry: str, index: str, proxy: str, ca: str, git_cli: bool) -> list[str]:
    """Variables that override what setup writes, each with what to do about it."""
    env = os.environ
    out: list[str] = []
    if env.get("CARGO_HTTP_PROXY", proxy) != proxy:
        out.append(f"warning: CARGO_HTTP_PROXY is set and overrides http.proxy; unset it (or set it to {proxy})")
    if env.get("CARGO_HTTP_CAINFO", ca) != ca:
        out.append(f"warning: CARGO_HTTP_CAINFO is set and overrides http.cainfo; unset it (or set it to {ca})")
    host = urlsplit(index.removeprefix("sparse+")).hostname or ""
    for var in ("NO_PROXY", "no_proxy"):
        if host and no_proxy_covers(env.get(var, ""), host):
            out.append(f"warning: {var} covers {host}, so Cargo and git bypass the proxy; remove that entry from {var}")
    if git_cli and env.get("GIT_SSL_CAINFO"):
        out.append(
            "warning: GIT_SSL_CAINFO is set and overrides the sslCAInfo setup wrote for git; "
            "unset it where you run cargo"
        )
    token_var = cargo_config.env_name(f"registries.{registry}.token")
    for var in (token_var, "CARGO_REGISTRY_TOKEN"):
        if env.get(var):
            out.append(
                f"note: {var} is set but not needed: the proxy sends a fresh token for "
                f"'{registry}' and replaces any static one; unset it"
            )
    return out


def no_proxy_covers(value: str, host: str) -> bool:
    """Whether a NO_PROXY list (curl's rules: `*`, domains, leading dots, IPs, CIDR) covers host."""
    host = host.lower().rstrip(".").strip("[]")
    for raw in value.split(","):
        item = raw.strip().lower()
        if not item:
            continue
        if item == "*":
            return True
        if item.count(":") == 1:  # host:port
            item = item.split(":")[0]
        item = item.lstrip("*").lstrip(".").strip("[]")
        if host == item or host.endswith("." + item):
            return True
        try:
            if ipaddress.ip_address(host) in ipaddress.ip_network(item, strict=False):
                return True
        except ValueError:
            pass
    return False


# ---------------------------------------------------------------- applying


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


def write_atomic(path: Path, data: bytes, new_mode: int | None = None) -> None:
    """Replace `path` with `data` so readers see the old or the new file, never half of one.

    The mode of an existing file is kept; a symlink is followed so the link itself survives.
    """
    real = path.resolve() if path.is_symlink() else path
    try:
        mode = stat.S_IMODE(real.stat().st_mode)
    except FileNotFoundError:
        mode = new_mode if new_mode is not None else 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(dir=real.parent, prefix=f".{real.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, real)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:
        dir_fd = os.open(real.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _missing_dirs(directory: Path) -> list[Path]:
    """Directories that must be created for `directory` to exist, outermost first."""
    missing: list[Path] = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    return list(reversed(missing))


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


# ---------------------------------------------------------------- git


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["git", "config", "--global", *args], capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        raise SetupError(
            "git not found on PATH; it is needed for git settings because net.git-fetch-with-cli is on"
        ) from None


def git_get_all(key: str) -> list[str]:
    """All values of a key in the user's global git config ([] when unset)."""
    result = _git("--get-all", key)
    if result.returncode == 1:
        return []
    if result.returncode != 0:
        raise SetupError(f"git config --global --get-all {_redact_key(key)}: {_first_line(result.stderr)}")
    return result.stdout.splitlines()


def git_set(key: str, values: list[str]) -> None:
    """Make `key` hold exactly `values` in the global git config ([] unsets it)."""
    result = _git("--unset-all", key)
    if result.returncode not in (0, 5):  # 5: the key was not set
        raise SetupError(f"git config --global --unset-all {_redact_key(key)}: {_first_line(result.stderr)}")
    for value in values:
        result = _git("--add", key, value)
        if result.returncode != 0:
            raise SetupError(f"git config --global --add {_redact_key(key)}: {_first_line(result.stderr)}")


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or ["failed"])[0]


# ---------------------------------------------------------------- small helpers


def _plain(item: Any) -> Any:
    """A tomlkit item as plain Python, for comparing with what setup wrote."""
    return item.unwrap() if hasattr(item, "unwrap") else item


def _same_newlines(original: str, new: str) -> str:
    """Keep a CRLF file CRLF: tomlkit writes new lines with a bare LF."""
    if "\r\n" in original:
        return re.sub(r"(?<!\r)\n", "\r\n", new)
    return new


def _tidy_end(text: str) -> str:
    """Drop the blank lines a removed table leaves at the end of the file."""
    stripped = text.rstrip("\r\n")
    if stripped == text:
        return text
    return stripped + ("\r\n" if text.endswith("\r\n") else "\n") if stripped else ""


def _redact(url: str) -> str:
    """A URL fit to print: any user:password part is dropped."""
    prefix = "sparse+" if url.startswith("sparse+") else ""
    parts = urlsplit(url.removeprefix(prefix))
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return prefix + urlunsplit(parts._replace(netloc=netloc))


def _redact_key(key: str) -> str:
    section, _, rest = key.partition(".")
    url, _, var = rest.rpartition(".")
    return f"{section}.{_redact(url)}.{var}"
