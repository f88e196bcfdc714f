"""Writes through `cargo vouch run`: publish, yank, unyank and owners on Cargo 1.65 (git
index) and current Cargo (sparse index), each with a token the provider issued for that
very operation; refused by default, with Cargo showing why."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.e2e.conftest import BIN, LEGACY_CARGO, LEGACY_RUSTC, World, current_cargo, needs_legacy_cargo
from tests.e2e.test_run import run_env, vouch_run

pytestmark = pytest.mark.e2e


def toolchain_for(kind: str) -> tuple[str, str]:
    if kind == "legacy":
        if not LEGACY_CARGO.exists():
            pytest.skip("Debian's cargo (1.65) is not installed: .ci/run installs it")
        return str(LEGACY_CARGO), str(LEGACY_RUSTC)
    found = current_cargo()
    if found is None:
        pytest.skip("no current Cargo on PATH")
    return found


def index_for(world: World, kind: str) -> str:
    return world.registry.git_index_url if kind == "legacy" else world.registry.sparse_index_url


def library(world: World, index: str, name: str = "newlib", version: str = "0.2.0") -> Path:
    project = world.root / name
    (project / "src").mkdir(parents=True)
    (project / "Cargo.toml").write_text(
        f'[package]\nname = "{name}"\nversion = "{version}"\nedition = "2018"\n'
        'description = "a new private crate"\nlicense = "MIT"\npublish = ["corp"]\n'
    )
    (project / "src" / "lib.rs").write_text("pub fn answer() -> u32 { 42 }\n")
    (project / ".cargo").mkdir()
    (project / ".cargo" / "config.toml").write_text(f'[registries.corp]\nindex = "{index}"\n')
    return project


def configure(world: World, index: str, extra: str = "") -> None:
    world.write_config(f'[registries.corp]\nindex = "{index}"\n{extra}')


def cargo_in_run(world: World, toolchain: tuple[str, str], project: Path, *args: str):  # type: ignore[no-untyped-def]
    env = run_env(world, *toolchain, project)
    env["PROVIDER_LOG"] = str(world.root / "provider-requests.jsonl")
    return vouch_run(world, toolchain[0], *args, "--registry", "corp", cwd=project, env=env)


def provider_requests(world: World) -> list[dict[str, object]]:
    log = world.root / "provider-requests.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.mark.parametrize("kind", ["legacy", "current"])
def test_publish_yank_unyank_owners_with_a_token_per_operation(world: World, kind: str) -> None:
    toolchain = toolchain_for(kind)
    world.login()
    index = index_for(world, kind)
    configure(world, index, f'allow-publish = true\ncredential-provider = ["{BIN / "provider-per-operation"}"]\n')
    project = library(world, index)

    steps = [
        ("publish", ["publish", "--no-verify", "--allow-dirty"]),
        ("yank", ["yank", "--vers", "0.2.0", "newlib"]),
        ("unyank", ["yank", "--undo", "--vers", "0.2.0", "newlib"]),
        ("owners", ["owner", "--list", "newlib"]),
    ]
    for operation, args in steps:
        result = cargo_in_run(world, toolchain, project, *args)
        assert result.returncode == 0, (operation, result.stderr)
        asked = [r for r in provider_requests(world) if r["operation"] == operation]
        assert asked, (operation, provider_requests(world))
        assert asked[-1]["name"] == "newlib"
        if operation != "owners":
            assert asked[-1]["vers"] == "0.2.0"

    [published] = world.registry.published
    assert published.metadata["name"] == "newlib" and published.subject == "alice@example.com"
    [publish_request] = [r for r in provider_requests(world) if r["operation"] == "publish"]
    assert publish_request["cksum"] == world.registry.index_entries("newlib")[0]["cksum"]
    assert world.registry.index_entries("newlib")[0]["yanked"] is False  # yanked, then unyanked
    writes = [r for r in world.registry.requests if r.method in ("PUT", "DELETE")]
    assert len(writes) == 3 and all(r.authenticated for r in writes)


@pytest.mark.parametrize("kind", ["legacy", "current"])
def test_default_config_refuses_publish_and_cargo_shows_why(world: World, kind: str) -> None:
    toolchain = toolchain_for(kind)
    world.login()
    index = index_for(world, kind)
    configure(world, index)
    project = library(world, index)

    result = cargo_in_run(world, toolchain, project, "publish", "--no-verify", "--allow-dirty")

    assert result.returncode != 0
    assert "set allow-publish = true in [registries.corp]" in result.stderr, result.stderr
    assert world.registry.published == []
    assert not any(r.method in ("PUT", "DELETE") for r in world.registry.requests)


@needs_legacy_cargo()
def test_a_crate_over_max_publish_size_gets_413(world: World) -> None:
    world.login()
    index = world.registry.git_index_url
    configure(world, index, 'allow-publish = true\nmax-publish-size = "1K"\n')
    project = library(world, index)
    (project / "src" / "data.bin").write_bytes(os.urandom(16 * 1024))  # random: gzip cannot shrink it

    result = cargo_in_run(world, toolchain_for("legacy"), project, "publish", "--no-verify", "--allow-dirty")

    assert result.returncode != 0
    assert "413" in result.stderr and "larger than max-publish-size (1024 bytes)" in result.stderr, result.stderr
    assert world.registry.published == []
