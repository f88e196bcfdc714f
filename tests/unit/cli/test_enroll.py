"""`cargo vouch enroll`, with the software authenticator standing in for a USB key."""

from __future__ import annotations

import json

import pytest

from cargo_vouch.cli.main import main
from cargo_vouch.touch import device, enrollment
from tests.fixtures import soft_fido


@pytest.fixture
def config_dir(tmp_path, monkeypatch):
    directory = tmp_path / "config"
    monkeypatch.setenv("CARGO_VOUCH_CONFIG", str(directory / "config.toml"))
    return directory


@pytest.fixture
def soft_key(tmp_path, monkeypatch):
    """What tests/fixtures/soft_key_cli.py does for a whole process."""
    monkeypatch.setenv(soft_fido.STATE_ENV, str(tmp_path / "soft-fido.json"))
    monkeypatch.setattr(device, "open_device", soft_fido.device)


def credential_id(config_dir):
    return json.loads((config_dir / enrollment.ENROLLMENT_FILE).read_text())["credential_id"]


def test_enroll_command_refuses_to_overwrite_without_force(config_dir, soft_key, capsys):
    path = config_dir / enrollment.ENROLLMENT_FILE

    assert main(["enroll"]) == 0
    out = capsys.readouterr().out
    first = credential_id(config_dir)
    assert out.splitlines()[0] == "touch your key to enroll it for cargo-vouch"
    assert str(path) in out
    assert enrollment.load_enrollment().short_id() in out

    assert main(["enroll"]) == 1
    err = capsys.readouterr().err
    assert "already enrolls credential" in err and "--force" in err
    assert credential_id(config_dir) == first

    assert main(["enroll", "--force"]) == 0
    assert credential_id(config_dir) != first


def test_enroll_command_follows_config(tmp_path, soft_key):
    assert main(["--config", str(tmp_path / "elsewhere" / "config.toml"), "enroll"]) == 0
    assert (tmp_path / "elsewhere" / enrollment.ENROLLMENT_FILE).exists()


def test_enroll_command_without_a_key(config_dir, monkeypatch, capsys):
    import fido2.hid

    monkeypatch.setattr(fido2.hid.CtapHidDevice, "list_devices", classmethod(lambda cls: iter(())))
    assert main(["enroll"]) == 1
    assert capsys.readouterr().err == "cargo-vouch: no FIDO2 authenticator found: plug in your security key\n"
    assert not (config_dir / enrollment.ENROLLMENT_FILE).exists()


def test_soft_key_state_is_shared_across_device_instances(config_dir, soft_key):
    """What the e2e proxy relies on: every `open_device()` sees the credential `enroll` made."""
    assert main(["enroll"]) == 0
    enrolled = enrollment.load_enrollment()
    key = device.open_device()
    assert key.state()["credential_id"]
    assert enrolled is not None and enrolled.last_counter == 0
