"""One provider call per token, as Cargo caches: proven with real Cargo and a count of the
Vouch test double's invocations."""

from __future__ import annotations

import pytest

from examples.demo.cratebuild import CrateSpec
from tests.e2e.conftest import World, current_cargo
from tests.e2e.test_cargo_builds import HELLO, assert_all_authenticated, setup_and_start

pytestmark = pytest.mark.e2e


@pytest.fixture
def toolchain() -> tuple[str, str]:
    found = current_cargo()
    if found is None:
        pytest.skip("no current Cargo on PATH")
    return found


@pytest.mark.crates(50)
def test_build_pulling_50_private_crates_calls_the_provider_once(world: World, toolchain) -> None:
    world.login()
    crates = [CrateSpec(f"crate{n:02d}", "1.0.0") for n in range(50)]
    project = world.project("app", crates, world.registry.sparse_index_url)
    world.write_config("")
    world.cargo_vouch("setup", "--registry", "corp", "--manifest-dir", str(project),
                      "--listen", f"127.0.0.1:{world.proxy_port}")  # reads config.json once: one call
    before = world.provider_gets()
    proxy = world.start_proxy()

    result = world.cargo(*toolchain, project, "build", "-j2")

    assert result.returncode == 0, result.stderr + proxy.log()
    downloads = [r for r in world.registry.requests if r.path.startswith("/dl/")]
    assert len(downloads) == 50
    assert_all_authenticated(world, expect_paths=["/sparse/config.json"])
    assert world.provider_gets() - before == 1  # the proxy's, for all of the build's requests


def test_token_near_expiry_is_not_reused_and_a_fresh_one_takes_over(world: World, toolchain) -> None:
    world.login(lifetime=45)  # already within Cargo's 60 s refresh margin
    project = world.project("app", [HELLO], world.registry.sparse_index_url)
    proxy = setup_and_start(world, project, world.registry.sparse_index_url)

    first = world.cargo(*toolchain, project, "fetch")
    assert first.returncode == 0, first.stderr + proxy.log()
    authenticated = [r for r in world.registry.requests if r.authenticated]
    # Each request found no reusable token and asked the provider again.
    assert world.provider_gets() > 1 and len(authenticated) >= 3

    fresh = world.login()  # a new 8-hour session
    world.registry.clear_requests()
    calls_before = world.provider_gets()
    (project / "Cargo.lock").unlink()
    second = world.cargo(*toolchain, project, "generate-lockfile")
    assert second.returncode == 0, second.stderr
    assert world.provider_gets() == calls_before + 1
    seen = world.registry.requests
    assert seen and all(r.authorization == fresh for r in seen)
