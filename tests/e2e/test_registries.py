"""The registries people run, as profiles of the test registry (examples/demo/profiles.py):
each builds through `cargo vouch run` on Cargo 1.65 (git index) and current Cargo (sparse,
auth-required), every registry request authenticated, and a CDN never sees a token."""

from __future__ import annotations

import pytest

from examples.demo.cratebuild import CrateSpec
from tests.e2e.conftest import World
from tests.e2e.test_run import run_env, vouch_run
from tests.e2e.test_writes import index_for, toolchain_for
from tests.fixtures.paths import BIN

pytestmark = pytest.mark.e2e

HELLO = CrateSpec("hello", "0.1.0")

#: profile -> what the cargo-vouch config says for it ({port}: the registry's)
SETTINGS = {
    "gitea": 'token-prefix = "Bearer "\n',
    "crate-version": "",
    "prefix": "",
    "lowerprefix": "",
    "checksum": "",
    "query": "",
    "same-origin-redirect": "",
    "cdn-redirect": "",
    "kellnr-443": "",
    "index-443": "",
    "bearer-only": 'token-prefix = "Bearer "\n',
    "basic-only": f'credential-provider = ["cargo:token-from-stdout", "{BIN / "token-basic"}"]\n',
    "dl-other-host": 'prefixes = ["https://127.0.0.1:{port}/dl/"]\n',
}

MATRIX = [
    pytest.param(profile, kind, marks=pytest.mark.profile(profile), id=f"{profile}-{kind}")
    for profile in SETTINGS
    for kind in ("legacy", "current")
]


@pytest.mark.parametrize("profile,kind", MATRIX)
def test_each_registry_profile_builds_on_both_cargos(world: World, profile: str, kind: str) -> None:
    toolchain = toolchain_for(kind)
    world.login()
    registry = world.registry
    index = index_for(world, kind)
    world.write_config(f'[registries.corp]\nindex = "{index}"\n' + SETTINGS[profile].replace("{port}", str(registry.port)))
    project = world.project("app", [HELLO], index)

    result = vouch_run(world, toolchain[0], "run", "--quiet", cwd=project, env=run_env(world, *toolchain, project))

    assert result.returncode == 0, result.stderr
    assert "hello from hello 0.1.0" in result.stdout
    seen = registry.requests
    refused = [(r.method, r.path, r.reason) for r in seen if not r.authenticated]
    assert seen and not refused, refused
    download = registry.download_url("hello", "0.1.0")
    assert any(download.endswith(r.path) for r in seen), (download, [r.path for r in seen])
    if profile == "same-origin-redirect":
        assert any(r.path == "/storage/hello/0.1.0.crate" for r in seen)  # the follow-up, with the token
    if profile == "cdn-redirect":
        assert world.cdn is not None and world.cdn.requests, "the download was not redirected"
        assert all("authorization" not in {k.lower() for k in r.headers} for r in world.cdn.requests)
        assert [r.status for r in world.cdn.requests] == [200]


@pytest.mark.profile("dl-other-host")
def test_setup_adds_the_download_host_config_json_names_and_the_build_needs_no_hand_edit(world: World) -> None:
    toolchain = toolchain_for("current")
    world.login()
    registry = world.registry
    project = world.project("app", [HELLO], registry.sparse_index_url)
    world.write_config("")
    setup = ("setup", "--registry", "corp", "--manifest-dir", str(project), "--listen", f"127.0.0.1:{world.proxy_port}")
    dl_prefix = f"https://127.0.0.1:{registry.port}/dl/"

    # A dry run sends no token to an index the cargo-vouch config does not name yet (the
    # project's Cargo config chose it), so it says that it has not read config.json.
    dry = world.cargo_vouch(*setup, "--dry-run")
    assert "not read in a dry run" in dry.stderr and "prefixes" not in dry.stdout, dry.stdout + dry.stderr
    assert world.registry.requests == []
    assert "prefixes" not in world.config_path.read_text()  # a dry run writes nothing

    world.cargo_vouch(*setup)
    assert f'prefixes = ["{dl_prefix}"]' in world.config_path.read_text()
    # Configured now: a dry run reads it, and shows that nothing is left to add.
    again = world.cargo_vouch(*setup, "--dry-run")
    assert "not read" not in again.stderr and "could not read" not in again.stderr, again.stderr
    world.start_proxy()
    result = world.cargo(*toolchain, project, "run", "--quiet")

    assert result.returncode == 0, result.stderr
    seen = world.registry.requests
    assert seen and all(r.authenticated for r in seen)
    doctor = world.cargo_vouch("doctor", "--manifest-dir", str(project), check=False)
    assert f"ok   dl/api corp: dl = {dl_prefix[:-1]}, api = " in doctor.stdout, doctor.stdout


@pytest.mark.profile("dl-other-host")
def test_doctor_names_the_prefix_a_download_host_needs(world: World) -> None:
    world.login()
    world.write_config(f'[registries.corp]\nindex = "{world.registry.sparse_index_url}"\n')
    doctor = world.cargo_vouch("doctor", check=False)
    assert (f'FAIL dl/api corp: dl = https://127.0.0.1:{world.registry.port}/dl is on a host the config does not cover '
            f'— add "https://127.0.0.1:{world.registry.port}/dl/" to prefixes in [registries.corp]') in doctor.stdout, doctor.stdout
