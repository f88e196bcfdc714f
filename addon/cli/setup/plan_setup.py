"""Planning `setup`: every change it makes to Cargo's config, cargo-vouch's config and git."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import tomlkit
import tomlkit.items

from cargo_vouch import cargo_config, paths
from cargo_vouch.ca.files import missing_dirs
from cargo_vouch.cargo_config import git_index_url, parse_toml, read_text, redact_url
from cargo_vouch.cli import cargo_version
from cargo_vouch.cli.environment import env_overrides
from cargo_vouch.cli.setup.gitconfig import git_get_all
from cargo_vouch.cli.setup.plan import (
    PROG,
    FileWrite,
    GitWrite,
    Plan,
    SetupError,
    plain,
    proxy_url,
    redact_key,
    same_newlines,
)
from cargo_vouch.cli.setup.records import rebase

#: What setup learns of a registry's config.json: the `prefixes` it needs, and notes.
HostsOf = Callable[[str, str], tuple[list[str], list[str]]]


def no_hosts(registry: str, index: str) -> tuple[list[str], list[str]]:
    return [], []


def plan_setup(
    *,
    registry: str,
    cwd: Path,
    target: Path,
    vouch_config: Path,
    listen: str | None,
    records: dict[str, Any],
    hosts_of: HostsOf = no_hosts,
) -> Plan:
    """Work out every change `setup` makes, without making any. `hosts_of(registry, index)`
    names the `prefixes` config.json's `dl` and `api` need (index_hosts.py)."""
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
    extra_prefixes, learned_notes = hosts_of(registry, index)
    plan.notes += learned_notes
    changed_vouch = _plan_vouch_registry(plan, vouch_config, vouch_text, vouch_doc, registry, index, extra_prefixes)
    git_url = git_index_url(index) if cargo_config.git_fetch_with_cli(cwd) else None
    changed_git = _plan_git(plan, registry, git_url, proxy, ca) if git_url else False

    targets = plan.records["targets"]
    entry = targets.get(str(target))
    if changed_target or changed_vouch or changed_git or entry is not None:
        entry = targets.setdefault(str(target), {"registries": [], "file": None, "keys": {}})
        if registry not in entry["registries"]:
            entry["registries"].append(registry)
    header = f"{PROG}: registry '{registry}' ({redact_url(index)}) via {proxy}"
    if not plan.files and not plan.git:
        plan.done[:0] = [header, f"  already set up, nothing changed ({target})"]
    else:
        plan.done.insert(0, header)
    plan.notes += [override.line for override in env_overrides(registry, index, proxy, ca, bool(git_url))]
    cargo = cargo_version.installed(cwd)
    advice = cargo_version.advice(cargo, index) if cargo else None
    if advice is not None:
        plan.notes.append(f"warning: {advice}")
    parts = urlsplit(index.removeprefix("sparse+"))
    if parts.scheme != "https":
        plan.notes.append(
            f"warning: index {redact_url(index)} is not https; cargo-vouch only authenticates "
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
    new = same_newlines(text or "", tomlkit.dumps(doc))
    created = missing_dirs(target.parent)
    entry = plan.records["targets"].setdefault(
        str(target), {"registries": [], "file": None, "keys": {}}
    )
    entry["file"] = rebase(entry["file"], text, new, created)
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
        raise SetupError(f"{path}: 'http' must be a table, not {plain(doc['http'])!r}; fix the file")
    previous: dict[str, Any] = {}
    for key, value in values.items():
        http = doc["http"]  # fetched again: tomlkit's dotted-key proxy goes stale after edits
        old = plain(http[key]) if key in http else None
        if old != value:
            previous[key] = old
            http[key] = value
    return previous


def _plan_vouch_registry(
    plan: Plan, path: Path, text: str | None, doc: Any, registry: str, index: str, prefixes: list[str]
) -> bool:
    """Add `[registries.NAME] index` (and the `prefixes` its config.json needs) to the
    cargo-vouch config unless the registry is already there."""
    registries = doc.get("registries")
    if registries is not None and not isinstance(registries, dict):
        raise SetupError(f"{path}: 'registries' must be a table; fix the file")
    if registries is not None and registry in registries:
        entry = registries[registry]
        existing = entry.get("index") if isinstance(entry, dict) else None
        if not isinstance(existing, str) or existing.rstrip("/") != index.rstrip("/"):
            plan.notes.append(
                f"warning: {path}: [registries.{registry}] index = {plain(existing)!r} differs "
                f"from Cargo's {redact_url(index)!r}; left as is, make them the same"
            )
        have = plain(entry.get("prefixes", [])) if isinstance(entry, dict) else []
        for prefix in prefixes:
            if prefix not in have:
                plan.notes.append(
                    f'warning: add "{prefix}" to prefixes in [registries.{registry}] of {path}: the registry\'s '
                    "config.json sends requests there, and without it they get no token"
                )
        return False
    inline = isinstance(registries, tomlkit.items.InlineTable)
    table = tomlkit.inline_table() if inline else tomlkit.table()
    table["index"] = index
    if prefixes:
        table["prefixes"] = list(prefixes)
    if registries is None:
        doc["registries"] = tomlkit.table(is_super_table=True)
    doc["registries"][registry] = table
    new = same_newlines(text or "", tomlkit.dumps(doc))
    created = missing_dirs(path.parent)
    entry = plan.records["vouch"].setdefault(str(path), {"registries": {}, "file": None})
    entry["file"] = rebase(entry["file"], text, new, created)
    entry["registries"][registry] = index
    if prefixes:  # what --remove compares the table with
        entry.setdefault("prefixes", {})[registry] = list(prefixes)
    plan.files.append(FileWrite(path, text, new, make_dirs=created))
    plan.done.append(f"  added [registries.{registry}] to {path}" + (f" with prefixes {', '.join(prefixes)}" if prefixes else ""))
    return True


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
        plan.done.append(f"  set git config --global {redact_key(key)}")
        changed = True
    return changed
