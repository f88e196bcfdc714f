"""CI, where there is no YubiKey: `cargo vouch run` with the client-credentials provider,
against a local OAuth server that checks the client's secret for real."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.conftest import World, current_cargo
from tests.e2e.test_run import plain_project, run_env, vouch_run
from tests.fixtures.oauth import OAuthServer

pytestmark = pytest.mark.e2e

SECRET = "ci-s3cret-for-tests"


@pytest.fixture
def oauth(world: World) -> Iterator[OAuthServer]:
    with OAuthServer(world.root / "oauth", world.pki, world.issuer, expires_in=3600) as server:
        server.add_client_secret("ci-builder", SECRET)
        yield server


def ci_config(world: World, oauth: OAuthServer) -> None:
    world.write_config(
        f'[registries.corp]\nindex = "{world.registry.sparse_index_url}"\n'
        "[registries.corp.client-credentials]\n"
        f'issuer = "{oauth.issuer_url}"\nclient-id = "ci-builder"\nclient-secret-env = "VOUCH_CLIENT_SECRET"\n'
    )


def test_build_in_run_gets_one_token_from_the_oauth_server(world: World, oauth: OAuthServer) -> None:
    toolchain = current_cargo()
    if toolchain is None:
        pytest.skip("no current Cargo on PATH")
    ci_config(world, oauth)
    project = plain_project(world, world.registry.sparse_index_url)
    env = {**run_env(world, *toolchain, project), "VOUCH_CLIENT_SECRET": SECRET}

    result = vouch_run(world, toolchain[0], "run", "--quiet", cwd=project, env=env)

    assert result.returncode == 0, result.stderr
    assert "hello from hello 0.1.0" in result.stdout
    seen = world.registry.requests
    assert seen and all(r.authenticated for r in seen)
    assert {r.subject for r in seen} == {"ci-builder"}
    # Every request of the build (and the proxy's own config.json fetch) shared one token.
    assert [(r.client_id, r.auth_method) for r in oauth.granted] == [("ci-builder", "client_secret_basic")]
    assert len(seen) >= 3
    assert world.provider_gets() == 0  # no Vouch session was asked for
    assert SECRET not in result.stdout + result.stderr


def test_wrong_secret_fails_the_build_with_a_clear_message(world: World, oauth: OAuthServer) -> None:
    toolchain = current_cargo()
    if toolchain is None:
        pytest.skip("no current Cargo on PATH")
    ci_config(world, oauth)
    project = plain_project(world, world.registry.sparse_index_url)
    env = {**run_env(world, *toolchain, project), "VOUCH_CLIENT_SECRET": "not-the-secret"}

    result = vouch_run(world, toolchain[0], "build", cwd=project, env=env)

    assert result.returncode != 0
    assert "invalid_client" in result.stderr and "VOUCH_CLIENT_SECRET" in result.stderr, result.stderr
    assert "not-the-secret" not in result.stdout + result.stderr
    assert world.registry.requests == []


def test_cmd_cannot_swap_the_config_before_the_proxy_reads_it(world: World, oauth: OAuthServer) -> None:
    """`run` starts CMD while the proxy is still starting. Had the proxy read the config file
    again then, CMD (a build script: the file is its user's) could swap in a config whose
    provider is its own program, which the proxy would run with the CI secret, kept from CMD,
    in its environment. The proxy uses the config `run` read before CMD started."""
    ci_config(world, oauth)
    leak = world.root / "leak"
    hostile = world.root / "hostile.toml"
    hostile.write_text(
        f'[registries.corp]\nindex = "{world.registry.sparse_index_url}"\n'
        f'credential-provider = ["/bin/sh", "-c", "env > {leak}; exit 1"]\n'
    )
    url = world.registry.sparse_index_url.removeprefix("sparse+") + "config.json"
    script = (
        f'cp {hostile} "$CARGO_VOUCH_CONFIG.new" && mv "$CARGO_VOUCH_CONFIG.new" "$CARGO_VOUCH_CONFIG" && '
        f'curl -sS --proxy "$CARGO_HTTP_PROXY" --cacert "$CARGO_HTTP_CAINFO" -o /dev/null -w "%{{http_code}}" {url}'
    )

    result = vouch_run(world, "sh", "-c", script, env={**world.env, "VOUCH_CLIENT_SECRET": SECRET})

    assert not leak.exists() or SECRET not in leak.read_text()
    assert result.returncode == 0, result.stderr
    assert result.stdout == "200"  # served with the token of the config run started with
    assert world.registry.requests and {r.subject for r in world.registry.requests} == {"ci-builder"}
