"""`touch = true`: every write through the proxy needs a touch of the enrolled key, bound to
that write. The key here is a software CTAP2 authenticator behind python-fido2's device
interface (tests/fixtures/soft_fido.py), running inside the proxy's process, which
tests/fixtures/soft_key_cli.py starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import REPO, World, needs_legacy_cargo
from tests.e2e.test_writes import cargo_in_run, configure, library, toolchain_for
from tests.fixtures.soft_fido import set_mode

pytestmark = [pytest.mark.e2e, needs_legacy_cargo()]


@pytest.fixture
def key(world: World) -> Path:
    """The soft authenticator's state file, enrolled with `cargo vouch enroll`."""
    state = world.root / "soft-fido.json"
    world.cli_module = "tests.fixtures.soft_key_cli"  # the software key stands in for USB
    world.env["SOFT_FIDO_STATE"] = str(state)
    world.env["PYTHONPATH"] = str(REPO)
    result = world.cargo_vouch("enroll", check=False)
    assert result.returncode == 0, result.stderr
    assert (world.root / "fido2-enrollment.json").exists()  # beside the cargo-vouch config
    return state


def publish(world: World, project: Path, version: str):  # type: ignore[no-untyped-def]
    manifest = project / "Cargo.toml"
    text = manifest.read_text()
    manifest.write_text(text.replace(text.split('version = "')[1].split('"')[0], version, 1))
    return cargo_in_run(world, toolchain_for("legacy"), project, "publish", "--no-verify", "--allow-dirty")


def test_publish_needs_a_touch_bound_to_the_crate(world: World, key: Path) -> None:
    world.login()
    index = world.registry.git_index_url
    configure(world, index, "allow-publish = true\ntouch = true\ntouch-timeout = 3\n")
    project = library(world, index)

    approved = publish(world, project, "0.2.0")
    assert approved.returncode == 0, approved.stderr
    sent = world.registry.published[0].crate
    checksum = __import__("hashlib").sha256(sent).hexdigest()[:16]
    assert f"touch your key to publish newlib v0.2.0 to corp (.crate sha256 {checksum})" in approved.stderr
    assert [p.metadata["vers"] for p in world.registry.published] == ["0.2.0"]

    refusals = {
        # the key answers with its last assertion, the one that approved 0.2.0
        "replay": "signature does not verify",
        "no-presence": "no user presence",
        "wrong-credential": "not the enrolled one",
        "timeout": "no touch within 3 s",
    }
    for n, (mode, reason) in enumerate(refusals.items()):
        set_mode(mode, key)
        refused = publish(world, project, f"0.3.{n}")
        assert refused.returncode != 0, mode
        assert "needs a touch of the enrolled security key" in refused.stderr, (mode, refused.stderr)
        assert reason in refused.stderr, (mode, refused.stderr)
    assert [p.metadata["vers"] for p in world.registry.published] == ["0.2.0"]  # no refused write got through
    assert len([r for r in world.registry.requests if r.method == "PUT"]) == 1


def test_yank_needs_a_touch_and_listing_owners_does_not(world: World, key: Path) -> None:
    world.login()
    index = world.registry.git_index_url
    configure(world, index, "allow-publish = true\ntouch = true\ntouch-timeout = 3\n")
    project = library(world, index)
    assert publish(world, project, "0.2.0").returncode == 0

    set_mode("no-presence", key)
    refused = cargo_in_run(world, toolchain_for("legacy"), project, "yank", "--vers", "0.2.0", "newlib")
    assert refused.returncode != 0 and "yank newlib v0.2.0 on corp" in refused.stderr, refused.stderr
    assert not any(r.method == "DELETE" for r in world.registry.requests)
    listed = cargo_in_run(world, toolchain_for("legacy"), project, "owner", "--list", "newlib")
    assert listed.returncode == 0, listed.stderr

    set_mode("approve", key)
    yanked = cargo_in_run(world, toolchain_for("legacy"), project, "yank", "--vers", "0.2.0", "newlib")
    assert yanked.returncode == 0, yanked.stderr
    assert world.registry.index_entries("newlib")[0]["yanked"] is True


def test_touch_without_an_enrolled_key_refuses_writes(world: World) -> None:
    world.login()
    index = world.registry.git_index_url
    configure(world, index, "allow-publish = true\ntouch = true\n")
    project = library(world, index)

    result = publish(world, project, "0.2.0")

    assert result.returncode != 0
    assert "run 'cargo vouch enroll'" in result.stderr, result.stderr
    assert world.registry.published == []


def test_an_owners_change_names_the_users_it_adds_or_removes(world: World, key: Path) -> None:
    world.login()
    index = world.registry.git_index_url
    configure(world, index, "allow-publish = true\ntouch = true\ntouch-timeout = 3\n")
    project = library(world, index)
    assert publish(world, project, "0.2.0").returncode == 0
    legacy = toolchain_for("legacy")

    added = cargo_in_run(world, legacy, project, "owner", "--add", "bob", "newlib")
    assert added.returncode == 0, added.stderr
    assert "touch your key to add bob to the owners of newlib on corp" in added.stderr

    set_mode("no-presence", key)
    refused = cargo_in_run(world, legacy, project, "owner", "--remove", "bob", "newlib")
    assert refused.returncode != 0
    assert "remove bob from the owners of newlib on corp" in refused.stderr, refused.stderr
    listed = cargo_in_run(world, legacy, project, "owner", "--list", "newlib")
    assert "bob" in listed.stdout, listed.stdout + listed.stderr  # still an owner: the removal never left
    assert len([r for r in world.registry.requests if r.method == "DELETE"]) == 0
