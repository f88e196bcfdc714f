"""Writes through the proxy: refused unless the registry allows them, and then carried
out by Cargo 1.65 with a token whose provider request names the crate and checksum."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import LEGACY_CARGO, LEGACY_RUSTC, World, needs_legacy_cargo

pytestmark = [pytest.mark.e2e, needs_legacy_cargo()]


def library(world: World) -> Path:
    """A crate to publish, with the registry in Cargo's config and a placeholder token,
    as `cargo vouch run` sets it: old Cargo refuses to publish without one."""
    project = world.root / "newlib"
    (project / "src").mkdir(parents=True)
    (project / "Cargo.toml").write_text(
        '[package]\nname = "newlib"\nversion = "0.2.0"\nedition = "2018"\n'
        'description = "a new private crate"\nlicense = "MIT"\npublish = ["corp"]\n'
    )
    (project / "src" / "lib.rs").write_text("pub fn answer() -> u32 { 42 }\n")
    (project / ".cargo").mkdir()
    (project / ".cargo" / "config.toml").write_text(f'[registries.corp]\nindex = "{world.registry.git_index_url}"\n')
    world.env["CARGO_REGISTRIES_CORP_TOKEN"] = "cargo-vouch"
    return project


def start(world: World, project: Path, allow_publish: bool):  # type: ignore[no-untyped-def]
    world.write_config(
        f'[registries.corp]\nindex = "{world.registry.git_index_url}"\n'
        f"allow-publish = {'true' if allow_publish else 'false'}\n"
    )
    world.cargo_vouch("setup", "--registry", "corp", "--manifest-dir", str(project),
                      "--listen", f"127.0.0.1:{world.proxy_port}")
    return world.start_proxy()


def publish(world: World, project: Path):  # type: ignore[no-untyped-def]
    return world.cargo(str(LEGACY_CARGO), str(LEGACY_RUSTC), project,
                       "publish", "--registry", "corp", "--no-verify", "--allow-dirty")


def test_publish_is_refused_unless_allowed(world: World) -> None:
    world.login()
    project = library(world)
    proxy = start(world, project, allow_publish=False)

    result = publish(world, project)

    assert result.returncode != 0
    assert "allow-publish = true" in result.stderr, result.stderr
    assert world.registry.published == []
    assert not any(r.method == "PUT" for r in world.registry.requests)
    proxy.stop()
    assert "publish" in proxy.log() and "refused" in proxy.log()


def test_allowed_publish_gets_a_token_for_that_crate(world: World) -> None:
    token = world.login()
    project = library(world)
    proxy = start(world, project, allow_publish=True)

    result = publish(world, project)

    assert result.returncode == 0, result.stderr + proxy.log()
    [published] = world.registry.published
    assert published.metadata["name"] == "newlib" and published.subject == "alice@example.com"
    put = [r for r in world.registry.requests if r.method == "PUT"]
    assert put and put[0].authorization == token  # the placeholder was replaced
    # Vouch's tokens are operation-independent: the read token fetched for the index
    # serves the publish too, as Cargo would reuse it.
    assert world.provider_gets() == 1
    proxy.stop()
    assert "corp PUT /web/api/v1/crates/new publish sub=alice@example.com" in proxy.log()
    assert world.files_containing(token) == []
