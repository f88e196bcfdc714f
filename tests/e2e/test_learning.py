"""How the proxy reads a registry's config.json itself (to learn dl/api): against the
real test registry, with real git going through the real proxy (so git never holds the
token); a redirect must never carry the token along."""

from __future__ import annotations

from pathlib import Path

import pytest

from cargo_vouch.index_config import IndexConfigError
from cargo_vouch.proxy.learning import fetch_git_config, fetch_sparse_config
from tests.e2e.conftest import LEGACY_CARGO, LEGACY_RUSTC, World, needs_legacy_cargo
from tests.e2e.test_cargo_builds import HELLO, setup_and_start
from tests.fixtures.origin import TlsOrigin

pytestmark = pytest.mark.e2e


def trust(world: World, tmp_path: Path) -> Path:
    """The bundle the proxy would use: here just the test CA."""
    return world.pki.ca_cert


def own_proxy(world: World) -> str:
    """A running proxy for the git index, as the proxy's own learning fetch reaches it."""
    world.login()
    world.write_config(f'[registries.corp]\nindex = "{world.registry.git_index_url}"\n')
    world.start_proxy()
    return f"http://127.0.0.1:{world.proxy_port}"


async def test_git_and_sparse_config_json_are_read_with_the_token(world: World, tmp_path: Path) -> None:
    token = world.issuer.mint()
    git = await fetch_git_config(world.registry.git_index_url, own_proxy(world), world.cainfo, 30)
    sparse = await fetch_sparse_config(world.registry.sparse_index_url, token, trust(world, tmp_path), 30)
    assert git["dl"] == sparse["dl"] == world.registry.dl_url
    assert all(r.authenticated for r in world.registry.requests)


async def test_sparse_redirect_does_not_carry_the_token(world: World, tmp_path: Path) -> None:
    token = world.issuer.mint()
    with TlsOrigin(tmp_path / "elsewhere", world.pki) as elsewhere:
        world.registry.add_redirect("/sparse/config.json", f"{elsewhere.url}/config.json")
        with pytest.raises(IndexConfigError, match="redirected"):
            await fetch_sparse_config(world.registry.sparse_index_url, token, trust(world, tmp_path), 30)
        assert elsewhere.requests == []


async def test_git_redirect_does_not_carry_the_token(world: World, tmp_path: Path) -> None:
    proxy_url = own_proxy(world)
    with TlsOrigin(tmp_path / "elsewhere", world.pki) as elsewhere:
        world.registry.add_redirect("/git/index.git/info/refs", f"{elsewhere.url}/index.git/info/refs?service=git-upload-pack")
        with pytest.raises(IndexConfigError):
            await fetch_git_config(world.registry.git_index_url, proxy_url, world.cainfo, 30)
        assert all("authorization" not in {k.lower() for k, _ in r.headers} for r in elsewhere.requests)


@needs_legacy_cargo()
def test_legacy_cargo_downloading_without_index_traffic_still_gets_tokens(world: World) -> None:
    """Cargo 1.65 with a complete lock file and a local index copy goes straight to the
    download URL: a fresh proxy must know dl before that first request."""
    world.login()
    project = world.project("app", [HELLO], world.registry.git_index_url)
    proxy = setup_and_start(world, project, world.registry.git_index_url)
    fetched = world.cargo(str(LEGACY_CARGO), str(LEGACY_RUSTC), project, "generate-lockfile")
    assert fetched.returncode == 0, fetched.stderr
    proxy.stop()
    world.registry.clear_requests()

    world.start_proxy()  # knows nothing yet
    built = world.cargo(str(LEGACY_CARGO), str(LEGACY_RUSTC), project, "run", "--quiet")

    assert built.returncode == 0, built.stderr
    assert "hello from hello 0.1.0" in built.stdout
    seen = world.registry.requests
    downloads = [r for r in seen if r.path.startswith("/dl/")]
    assert downloads and all(r.authenticated for r in downloads)
    # Cargo itself made no index request: the only ones are the proxy's own (git's agent).
    assert all(r.headers.get("User-Agent", "").startswith("git/") for r in seen if r.path.startswith("/git/"))
