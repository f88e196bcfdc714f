"""Real Cargo through a real `mitmdump -s addon/vouch_addon.py` to a registry that rejects
every request without a valid Vouch token: a build that succeeds proves authentication."""

from __future__ import annotations

import pytest

from examples.demo.cratebuild import CrateSpec
from tests.e2e.conftest import LEGACY_CARGO, LEGACY_RUSTC, World, current_cargo, needs_legacy_cargo

pytestmark = pytest.mark.e2e

HELLO = CrateSpec("hello", "0.1.0")


def setup_and_start(world: World, project, registry_index: str):  # type: ignore[no-untyped-def]
    world.write_config("")  # setup adds [registries.corp] from Cargo's config
    result = world.cargo_vouch("setup", "--registry", "corp", "--manifest-dir", str(project),
                               "--listen", f"127.0.0.1:{world.proxy_port}")
    assert "corp" in world.config_path.read_text(), result.stdout + result.stderr
    return world.start_proxy()


def assert_all_authenticated(world: World, *, expect_paths: list[str]) -> None:
    seen = world.registry.requests
    assert seen, "the registry saw no request"
    unauthenticated = [(r.method, r.path, r.reason) for r in seen if not r.authenticated]
    assert not unauthenticated
    assert {r.subject for r in seen} == {"alice@example.com"}
    for fragment in expect_paths:
        assert any(fragment in r.path for r in seen), (fragment, [r.path for r in seen])


def assert_no_token_leaked(world: World, token: str, proxy) -> None:  # type: ignore[no-untyped-def]
    proxy.stop()  # flush the flow and HAR files
    assert proxy.flows_path.exists() and proxy.har_path.exists()
    assert token not in proxy.log()
    assert world.files_containing(token) == []
    assert "<redacted by cargo-vouch>" in proxy.log()  # flow_detail=3 printed the header


@needs_legacy_cargo()
@pytest.mark.parametrize("git_cli", [False, True], ids=["libgit2", "git-fetch-with-cli"])
def test_legacy_cargo_builds_from_private_git_index(world: World, git_cli: bool) -> None:
    token = world.login()
    project = world.project("app", [HELLO], world.registry.git_index_url, net_cli=git_cli)
    original_cargo_config = (project / ".cargo" / "config.toml").read_bytes()
    proxy = setup_and_start(world, project, world.registry.git_index_url)
    if git_cli:
        gitconfig = (world.home / ".gitconfig").read_text()
        assert f'[http "{world.registry.git_index_url}"]' in gitconfig
        assert "[http]\n" not in gitconfig  # scoped to the index URL, never global

    result = world.cargo(str(LEGACY_CARGO), str(LEGACY_RUSTC), project, "run", "--quiet")

    assert result.returncode == 0, result.stderr + proxy.log()
    assert "hello from hello 0.1.0" in result.stdout
    assert_all_authenticated(world, expect_paths=["/git/index.git/info/refs", "git-upload-pack", "/dl/hello/0.1.0/download"])
    assert_no_token_leaked(world, token, proxy)  # stops the proxy: its log is complete
    assert "corp GET /dl/hello/0.1.0/download read sub=alice@example.com" in proxy.log()

    world.cargo_vouch("setup", "--registry", "corp", "--manifest-dir", str(project), "--remove")
    assert (project / ".cargo" / "config.toml").read_bytes() == original_cargo_config
    if git_cli:
        assert world.registry.git_index_url not in (world.home / ".gitconfig").read_text()


def test_current_cargo_sparse_auth_required_without_local_credential(world: World) -> None:
    toolchain = current_cargo()
    if toolchain is None:
        pytest.skip("no current Cargo on PATH")
    assert world.registry.sparse_config()["auth-required"] is True
    token = world.login()
    project = world.project("app", [HELLO], world.registry.sparse_index_url)
    proxy = setup_and_start(world, project, world.registry.sparse_index_url)

    result = world.cargo(*toolchain, project, "run", "--quiet")

    assert result.returncode == 0, result.stderr + proxy.log()
    assert "hello from hello 0.1.0" in result.stdout
    assert_all_authenticated(world, expect_paths=["/sparse/config.json", "/sparse/he/ll/hello", "/dl/hello/0.1.0/download"])
    assert_no_token_leaked(world, token, proxy)


def test_logged_out_build_fails_saying_vouch_login_and_registry_sees_nothing(world: World) -> None:
    toolchain = current_cargo()
    if toolchain is None:
        pytest.skip("no current Cargo on PATH")
    project = world.project("app", [HELLO], world.registry.sparse_index_url)
    proxy = setup_and_start(world, project, world.registry.sparse_index_url)

    result = world.cargo(*toolchain, project, "build")

    assert result.returncode != 0
    assert "vouch login" in result.stderr, result.stderr
    assert world.registry.requests == []
    proxy.stop()
    assert "no token for registry 'corp'" in proxy.log()


@needs_legacy_cargo()
def test_logged_out_legacy_cargo_says_vouch_login(world: World) -> None:
    project = world.project("app", [HELLO], world.registry.git_index_url)
    setup_and_start(world, project, world.registry.git_index_url)

    result = world.cargo(str(LEGACY_CARGO), str(LEGACY_RUSTC), project, "build")

    assert result.returncode != 0
    assert "vouch login" in result.stderr, result.stderr
    assert world.registry.requests == []



def test_cargo_vouch_proxy_and_doctor_on_a_real_setup(world: World) -> None:
    """The developer path of the README: setup, `cargo vouch proxy`, doctor, build."""
    toolchain = current_cargo()
    if toolchain is None:
        pytest.skip("no current Cargo on PATH")
    world.login()
    project = world.project("app", [HELLO], world.registry.sparse_index_url)
    world.write_config("")
    world.cargo_vouch("setup", "--registry", "corp", "--manifest-dir", str(project),
                      "--listen", f"127.0.0.1:{world.proxy_port}")
    proxy = world.start_proxy(cli=True)

    doctor = world.cargo_vouch("doctor", "--manifest-dir", str(project), check=False)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert f"ok   proxy: 127.0.0.1:{world.proxy_port} accepts connections" in doctor.stdout
    assert "ok   provider corp: vouch credential cargo --: subject=alice@example.com" in doctor.stdout

    result = world.cargo(*toolchain, project, "run", "--quiet")
    assert result.returncode == 0, result.stderr + proxy.log()
    assert_all_authenticated(world, expect_paths=["/sparse/config.json", "/dl/hello/0.1.0/download"])
    proxy.stop()
    assert f"cargo-vouch: proxy listening at 127.0.0.1:{world.proxy_port}" in proxy.log()
    assert "corp GET /dl/hello/0.1.0/download read sub=alice@example.com" in proxy.log()
