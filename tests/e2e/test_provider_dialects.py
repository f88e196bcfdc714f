"""Both dialects of the credential protocol, end to end: the Vouch stand-in (nested action,
unwrapped answers, as the real `vouch credential cargo`) and a provider that speaks only
Cargo's protocol (flattened request, `{"Ok":…}`), each through real Cargo and a real proxy
to a registry that refuses every request without a valid token."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from examples.demo.cratebuild import CrateSpec
from tests.e2e.conftest import LEGACY_CARGO, LEGACY_RUSTC, World, current_cargo, needs_legacy_cargo
from tests.e2e.test_run import run_env, vouch_run

pytestmark = pytest.mark.e2e

HELLO = CrateSpec("hello", "0.1.0")
#: provider id -> (credential-provider line for the config, or "" for the default Vouch one)
PROVIDERS = {
    "vouch-dialect": "",
    "cargo-protocol": 'credential-provider = ["provider-cargo-strict"]\n',
}


def provider_answers(world: World) -> list[dict[str, object]]:
    """The get requests each provider logged, with the one that answered."""
    log = Path(world.env["VOUCH_DOUBLE_LOG"])
    entries = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return [e for e in entries if e.get("kind") == "get"]


def assert_built_with(world: World, result_ok: bool, output: str, provider: str) -> None:
    assert result_ok, output
    assert "hello from hello 0.1.0" in output
    seen = world.registry.requests
    assert seen and all(r.authenticated for r in seen), [(r.method, r.path, r.reason) for r in seen]
    assert any("/dl/hello/0.1.0/download" in r.path for r in seen)
    answers = provider_answers(world)
    assert answers and all(a["result"] == "ok" for a in answers), answers
    strict = [a.get("provider") == "cargo-strict" for a in answers]
    assert all(strict) if provider == "cargo-protocol" else not any(strict)


@needs_legacy_cargo()
@pytest.mark.parametrize("provider", PROVIDERS)
def test_legacy_cargo_git_index_through_mitmdump_after_setup(world: World, provider: str) -> None:
    world.login()
    project = world.project("app", [HELLO], world.registry.git_index_url)
    world.write_config("")
    world.cargo_vouch("setup", "--registry", "corp", "--manifest-dir", str(project),
                      "--listen", f"127.0.0.1:{world.proxy_port}")
    with world.config_path.open("a") as config:  # setup added [registries.corp] last
        config.write(PROVIDERS[provider])
    proxy = world.start_proxy()

    result = world.cargo(str(LEGACY_CARGO), str(LEGACY_RUSTC), project, "run", "--quiet")

    assert_built_with(world, result.returncode == 0, result.stdout + result.stderr + proxy.log(), provider)
    assert any("git-upload-pack" in r.path for r in world.registry.requests)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_current_cargo_sparse_auth_required_through_run(world: World, provider: str) -> None:
    toolchain = current_cargo()
    if toolchain is None:
        pytest.skip("no current Cargo on PATH")
    assert world.registry.sparse_config()["auth-required"] is True
    world.login()
    world.write_config(f'[registries.corp]\nindex = "{world.registry.sparse_index_url}"\n{PROVIDERS[provider]}')
    project = world.project("app", [HELLO], world.registry.sparse_index_url)

    result = vouch_run(world, toolchain[0], "run", "--quiet", cwd=project, env=run_env(world, *toolchain, project))

    assert_built_with(world, result.returncode == 0, result.stdout + result.stderr, provider)
    assert any(r.path == "/sparse/config.json" for r in world.registry.requests)
