"""Planning `setup --remove`: taking back exactly what setup recorded."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import tomlkit

from cargo_vouch.cargo_config import parse_toml, read_text
from cargo_vouch.cli.setup.gitconfig import git_get_all
from cargo_vouch.cli.setup.plan import (
    PROG,
    FileWrite,
    GitWrite,
    Plan,
    SetupError,
    plain,
    redact_key,
    same_newlines,
    tidy_end,
)
from cargo_vouch.cli.setup.records import original_text, rebase


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
    known, original = original_text(entry["file"], text)
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
        new = tidy_end(same_newlines(text, tomlkit.dumps(doc)))
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
        current = plain(http[key]) if isinstance(http, dict) and key in http else None
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
        known, original = original_text(entry["file"], text)
        if known and not entry["registries"]:
            _restore(plan, path, text, original, entry["file"])
        elif text is not None:
            _remove_vouch_entry(plan, path, text, name, index, entry)
        entry.get("prefixes", {}).pop(name, None)
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
    written: dict[str, object] = {"index": index}
    if entry.get("prefixes", {}).get(name):
        written["prefixes"] = entry["prefixes"][name]
    if plain(table) != written:
        plan.done.append(f"  left [registries.{name}] in {path}: it was edited after setup")
        return
    del doc["registries"][name]
    if not doc["registries"]:
        del doc["registries"]
    new = tidy_end(same_newlines(text, tomlkit.dumps(doc)))
    entry["file"] = rebase(entry["file"], text, new, [])
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
                plan.done.append(f"  left git config {redact_key(key)}: it was changed after setup")
            continue
        plan.git.append(GitWrite(key, current, list(rec["previous"])))
        verb = "restored" if rec["previous"] else "unset"
        plan.done.append(f"  {verb} git config --global {redact_key(key)}")


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
