"""The tree shows the architecture, and keeps showing it: layers import only downwards, no
module imports in a cycle, and nothing reaches into another module's private names.

Layers, bottom up: the shared model (`config`, `protocol`, `paths`, … and the CA), then
`providers` and `touch`, then `proxy`, then `cli`.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.fixtures.paths import REPO

PACKAGE = "cargo_vouch"
FOLDERS = {PACKAGE: REPO / "addon", f"{PACKAGE}.ca": REPO / "ca"}
LAYERS = {"providers": 1, "touch": 1, "proxy": 2, "vouch_addon": 3, "cli": 4}


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names imported from it) for every `cargo_vouch` import in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PACKAGE):
            found.append((node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names if alias.name.startswith(PACKAGE)]
    return found


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.get(parts[1], 0) if len(parts) > 1 else 0


def graph() -> dict[str, set[str]]:
    known = modules()
    edges: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        for target, names in imports(path):
            for candidate in [f"{target}.{n}" for n in names] + [target]:
                if candidate in known and candidate != name:
                    edges[name].add(candidate)
                    break
    return edges


def test_every_import_goes_down_or_stays_in_its_layer() -> None:
    upward = [
        f"{source} (layer {layer(source)}) imports {target} (layer {layer(target)})"
        for source, targets in graph().items()
        for target in targets
        if layer(target) > layer(source)
    ]
    assert upward == []


def test_no_import_cycles() -> None:
    edges = graph()
    state: dict[str, str] = {}
    cycles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for target in sorted(edges[node]):
            if state.get(target) == "open":
                cycles.append([*trail[trail.index(target):], target])
            elif target not in state:
                visit(target, [*trail, target])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_no_module_imports_another_module_s_private_names() -> None:
    reaching = [
        f"{path.relative_to(REPO)} imports {target}.{name}"
        for path in modules().values()
        for target, names in imports(path)
        for name in names
        if name.startswith("_")
    ]
    assert reaching == []


def test_installed_as_one_package_with_folders_by_role() -> None:
    packages = {name for name, path in modules().items() if path.name == "__init__.py"}
    assert packages == {
        "cargo_vouch", "cargo_vouch.ca", "cargo_vouch.cli", "cargo_vouch.cli.setup",
        "cargo_vouch.providers", "cargo_vouch.proxy", "cargo_vouch.touch",
    }
