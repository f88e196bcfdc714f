"""What `pip install` puts into a user's site-packages: one package, `cargo_vouch`, and no
generic top-level `addon` or `ca` that would overwrite (or be overwritten by) another
project's (pypa/pip#4625). Built from a copy of the sources, so the checkout gets no
build output."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.fixtures.paths import REPO


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in ("addon", "ca"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(source)],
        check=True, capture_output=True, text=True, timeout=600,
    )
    [built] = out.glob("cargo_vouch-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel unpacked as pip installs it, into a directory of its own."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)],
        check=True, capture_output=True, text=True, timeout=600,
    )
    return target


def test_the_wheel_holds_only_cargo_vouch(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"cargo_vouch", "cargo_vouch-0.1.0.dist-info"}
    assert "cargo_vouch/vouch_addon.py" in names and "cargo_vouch/ca/authority.py" in names
    assert not any(name.startswith(("addon/", "ca/", "tests/", "examples/")) for name in names)


def run_python(site: Path, code: str) -> subprocess.CompletedProcess[str]:
    """The venv's python, seeing the installed copy first, run from a neutral directory."""
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, "-c", code], cwd=site.parent, env=env, capture_output=True, text=True)


def test_no_generic_top_level_module_is_installed(installed: Path) -> None:
    assert sorted(p.name for p in installed.iterdir() if not p.name.endswith(".dist-info")) == ["bin", "cargo_vouch"]
    for generic in ("addon", "ca"):
        result = run_python(installed, f"import {generic}")
        assert result.returncode != 0 and "ModuleNotFoundError" in result.stderr


def test_addon_path_names_the_installed_script(installed: Path) -> None:
    result = run_python(installed, "from cargo_vouch.cli.main import main; main(['addon-path'])")
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()) == installed / "cargo_vouch" / "vouch_addon.py"


def test_the_script_stops_with_one_line_where_the_package_is_missing(tmp_path: Path) -> None:
    """mitmdump swallows a script's SystemExit: the script logs an error instead, on which
    mitmdump exits at start-up (checked by hand with a venv holding only mitmproxy)."""
    code = (
        "import logging, runpy, sys\n"
        "logging.basicConfig(format='%(message)s')\n"
        "class NotInstalled:\n"
        "    @staticmethod\n"
        "    def find_spec(name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'cargo_vouch':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, NotInstalled)\n"
        f"module = runpy.run_path({str(REPO / 'addon' / 'vouch_addon.py')!r})\n"
        "print('addons:', module['addons'])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "addons: []\n"
    assert result.stderr.strip().splitlines() == [
        "cargo-vouch: the cargo_vouch package is not installed for this mitmdump: run 'make install' "
        "in the checkout (or 'pip install .') and use the mitmdump it installs"
    ]
