"""Once the proxy runs, no module is imported: a build script could have written it."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import pytest
from mitmproxy.test import taddons

from cargo_vouch.proxy import sealed_imports
from cargo_vouch.proxy.sealed_imports import PRELOAD, SealImports


@pytest.fixture
def planted(tmp_path: Path):
    """A module a build script has put where Python looks (the console script's folder)."""
    (tmp_path / "planted_by_build.py").write_text("import os\nos.environ['PLANTED_RAN'] = '1'\n")
    sys.path.insert(0, str(tmp_path))
    yield "planted_by_build"
    sys.path.remove(str(tmp_path))
    sys.modules.pop("planted_by_build", None)


def test_after_running_an_import_is_refused_with_one_line_and_nothing_runs(planted: str, caplog) -> None:
    addon = SealImports()
    with taddons.context(addon):
        try:
            addon.running()
            with pytest.raises(ImportError, match="refused after start-up"):
                __import__(planted)
        finally:
            sealed_imports.unseal()
    assert "PLANTED_RAN" not in __import__("os").environ
    assert [r.getMessage() for r in caplog.records if "refused to import" in r.getMessage()] == [
        f"cargo-vouch: refused to import {planted} after start-up (a module loaded now could be one a build "
        "script has just written); please report this as a bug"
    ]


def test_what_the_proxy_imports_on_demand_is_loaded_before_the_seal(planted: str) -> None:
    addon = SealImports()
    try:
        addon.running()
        assert all(name in sys.modules for name in PRELOAD)
        import cargo_vouch.touch.device  # noqa: F401  already loaded: no finder is asked
    finally:
        sealed_imports.unseal()
    __import__(planted)  # and once unsealed (tests only), imports work again


async def test_mitmdump_s_scripts_are_not_reloaded_once_the_proxy_runs(tmp_path: Path, caplog) -> None:
    """A build that rewrites vouch_addon.py would otherwise have mitmdump run its code."""
    from mitmproxy.addons import script

    caplog.set_level(logging.INFO, logger="cargo_vouch")
    path = tmp_path / "vouch_addon.py"
    path.write_text("")
    loader = script.ScriptLoader()
    addon = SealImports()
    with taddons.context(loader, addon):
        watched = script.Script(str(path), reload=True)
        loader.addons.append(watched)
        task = watched.reloadtask
        try:
            addon.running()
        finally:
            sealed_imports.unseal()
        with pytest.raises(asyncio.CancelledError):  # the watcher is gone (a live one would time out)
            await asyncio.wait_for(task, 10)
        assert watched.reloadtask is None
    assert f"cargo-vouch: {path}: not reloaded when it changes (restart mitmdump to load a change)" in caplog.messages
