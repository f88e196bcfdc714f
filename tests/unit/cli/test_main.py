"""The command line's one error root: every problem is one line on stderr and the exit
status the error carries; no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from cargo_vouch.cli.main import addon_path, main


def test_a_config_error_is_one_line_naming_file_and_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "cargo-vouch.toml"
    config.write_text('[proxy]\nlisten = "0.0.0.0:9001"\n')
    assert main(["--config", str(config), "run", "--", "true"]) == 1
    assert capsys.readouterr().err == (
        f"cargo-vouch: {config}: proxy.listen: '0.0.0.0' is not a loopback address; use 127.0.0.1 or ::1\n"
    )


def test_bad_usage_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(tmp_path / "absent.toml"), "run"]) == 2
    assert capsys.readouterr().err == "cargo-vouch: run: no command given; usage: cargo vouch run -- CMD [ARG...]\n"


def test_a_named_config_that_is_missing_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "absent.toml"
    assert main(["--config", str(missing), "ca", "init"]) == 1
    assert capsys.readouterr().err == f"cargo-vouch: {missing}: no such file (named by --config or CARGO_VOUCH_CONFIG)\n"


def test_cargo_passes_its_subcommand_name_first(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["vouch", "addon-path"]) == 0
    assert capsys.readouterr().out == f"{addon_path()}\n"
    assert addon_path().name == "vouch_addon.py" and addon_path().is_file()


def test_ctrl_c_anywhere_is_one_line_and_130(monkeypatch, capsys) -> None:
    """Ctrl-C while a command loaded, or while it waited on a provider, printed Python's
    KeyboardInterrupt traceback."""
    from cargo_vouch.cli import main as cli_main

    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_main, "build_parser", interrupted)
    assert cli_main.main(["doctor"]) == 130
    assert capsys.readouterr().err == "cargo-vouch: interrupted\n"
