"""`cargo-vouch doctor`: every check against real parts (the CA, `setup`'s Cargo config, the
vouch double and its issuer, a listening socket), each failure named with what to do."""

from __future__ import annotations

import argparse
import datetime
import itertools
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cargo_vouch import paths
from cargo_vouch.ca.authority import ca_files, ensure_ca, load_cert
from cargo_vouch.cli import doctor
from cargo_vouch.cli.environment import env_overrides
from cargo_vouch.cli.main import main
from cargo_vouch.config import load_config
from tests.unit.conftest import CARGO_SETUP_ENV

SPARSE = "sparse+https://cargo.corp.example/index/"
GIT_INDEX = "https://git.corp.example/cargo/index.git"


#: Looked up before any test changes HOME: rustup's cargo needs the real RUSTUP_HOME.
REAL_CARGO = shutil.which("cargo")
REAL_RUSTUP_HOME = os.environ.get("RUSTUP_HOME") or str(Path.home() / ".rustup")


@dataclass
class Env:
    root: Path
    project: Path
    vouch_config: Path
    listener: socket.socket
    port: int

    @property
    def proxy(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def cargo_file(self) -> Path:
        return self.project / ".cargo" / "config.toml"


@dataclass
class Result:
    code: int
    out: str
    err: str

    def line(self, prefix: str) -> str:
        """The one output line that starts with `prefix`."""
        lines = [line for line in self.out.splitlines() if line.startswith(prefix)]
        assert len(lines) == 1, f"{prefix!r} in:\n{self.out}"
        return lines[0]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def fake_cargo(directory: Path, version: str) -> None:
    """A `cargo` that only knows `--version`: the test's HOME hides rustup's toolchains."""
    script = write(directory / "cargo", f'#!/bin/sh\necho "{version}"\n')
    script.chmod(0o755)


@pytest.fixture
def env(isolated_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    """A project whose Cargo config names registry `corp`, a cargo-vouch config for it, and a
    plain TCP listener standing in for the proxy (its port is the config's `[proxy] listen`)."""
    for var in (*CARGO_SETUP_ENV, "CARGO", "VOUCH_TEST_ISSUER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(isolated_home / ".gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    fake_cargo(tmp_path / "cargo-bin", "cargo 1.70.0")  # reads sparse indexes, cannot authenticate
    monkeypatch.setenv("PATH", f"{tmp_path / 'cargo-bin'}{os.pathsep}{os.environ['PATH']}")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def hang_up() -> None:  # accepts, as a proxy does, then says nothing: a git fetch fails at once
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.close()

    threading.Thread(target=hang_up, daemon=True).start()
    e = Env(tmp_path, tmp_path / "work" / "project", tmp_path / "vouch" / "config.toml", listener, port)
    write(e.cargo_file, f'[registries.corp]\nindex = "{SPARSE}"\n')
    write(e.vouch_config, f'[proxy]\nlisten = "127.0.0.1:{e.port}"\n\n[registries.corp]\nindex = "{SPARSE}"\n')
    monkeypatch.setenv("CARGO_VOUCH_CONFIG", str(e.vouch_config))
    monkeypatch.chdir(tmp_path)
    yield e
    listener.close()


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Result:
    """`cargo-vouch ARGV` through the real command line's entry point."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return Result(code, out, err)


def set_up(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """`cargo vouch setup` for the project: Cargo's http.proxy and cainfo, and the CA."""
    result = run_cli(capsys, "setup", "--registry", "corp", "--manifest-dir", str(env.project))
    assert result.code == 0, result.err


def run_doctor(env: Env, capsys: pytest.CaptureFixture[str], *argv: str) -> Result:
    return run_cli(capsys, "doctor", "--manifest-dir", str(env.project), *argv)


# ---------------------------------------------------------------- the whole picture


def test_passes_on_a_correct_setup(env: Env, capsys, vouch_session: str) -> None:
    set_up(env, capsys)

    result = run_doctor(env, capsys)

    assert result.code == 0, result.out
    assert result.out.splitlines()[-1].startswith("all ") and "checks passed" in result.out
    statuses = [line.split()[0] for line in result.out.splitlines()[:-1]]
    # cargo.corp.example does not exist: its config.json cannot be read, which only warns.
    assert statuses == ["ok"] * 8 + ["warn"], result.out
    assert "warn dl/api corp: config.json not read" in result.out
    assert "before 1.74" in result.line("ok   cargo: cargo 1.70.0")
    assert str(env.vouch_config) in result.line("ok   config:")
    assert "cargo.corp.example" in result.line("ok   ca:")
    assert env.proxy in result.line("ok   cargo config:")
    assert str(env.cargo_file) in result.line("ok   cargo config:")
    assert f"127.0.0.1:{env.port} accepts connections" in result.line("ok   proxy:")
    provider = result.line("ok   provider corp:")
    assert "subject=alice@example.com expires in 7h5" in provider
    assert provider.endswith("; answers in Vouch's dialect (unwrapped)")
    assert vouch_session not in result.out + result.err
    assert vouch_session.split(".")[1] not in result.out + result.err  # not even the claims part


def test_exit_status_counts_only_failures(env: Env, capsys, vouch_session: str, monkeypatch) -> None:
    set_up(env, capsys)
    monkeypatch.setenv("CARGO_REGISTRIES_CORP_TOKEN", "s3cret-static-token")

    result = run_doctor(env, capsys)

    assert result.code == 0, result.out
    line = result.line("warn environment:")
    assert "CARGO_REGISTRIES_CORP_TOKEN is set but not needed" in line and "— unset it" in line
    assert "s3cret-static-token" not in result.out + result.err


# ---------------------------------------------------------------- the CA


def test_missing_ca_fails_with_ca_init(env: Env, capsys, vouch_session: str) -> None:
    set_up(env, capsys)
    shutil.rmtree(paths.ca_dir())

    result = run_doctor(env, capsys)

    assert result.code == 1
    assert result.line("FAIL ca:") == f"FAIL ca: no CA at {paths.ca_cert_path()} — run 'cargo vouch ca init'"
    assert "1 of 9 checks failed" in result.out


def test_ca_not_covering_a_registry_host_fails(env: Env, capsys, vouch_session: str) -> None:
    set_up(env, capsys)
    other = "sparse+https://other.example/index/"
    with env.vouch_config.open("a") as f:
        f.write(f'\n[registries.other]\nindex = "{other}"\n')

    result = run_doctor(env, capsys, "--registry", "corp")

    assert result.code == 1
    line = result.line("FAIL ca:")
    assert "may not sign for other.example" in line and "cargo vouch ca init" in line


def test_ca_check_reports_expiry(env: Env, capsys) -> None:
    set_up(env, capsys)
    config = load_config(env.vouch_config)
    cert_valid_until = load_cert(ca_files(paths.ca_dir())).not_valid_after_utc

    late = doctor.check_ca(config, now=cert_valid_until + datetime.timedelta(days=1))
    soon = doctor.check_ca(config, now=cert_valid_until - datetime.timedelta(days=3))

    assert not late.ok and "not valid now" in late.detail and "ca rotate" in late.hint
    assert soon.ok and "CA expires soon" in soon.detail


# ---------------------------------------------------------------- Cargo's config


def test_cargo_config_without_setup_fails_with_setup_hint(env: Env, capsys, vouch_session: str) -> None:
    ensure_ca(paths.ca_dir(), {"cargo.corp.example"})  # a CA, but no setup

    result = run_doctor(env, capsys)

    assert result.code == 1
    line = result.line("FAIL cargo config:")
    assert "http.proxy is not set" in line and "http.cainfo is not set" in line
    assert line.endswith(f"— run 'cargo vouch setup --registry corp --manifest-dir {env.project.resolve()}'")


def test_cargo_config_pointing_elsewhere_fails(env: Env, capsys, vouch_session: str) -> None:
    set_up(env, capsys)
    text = env.cargo_file.read_text().replace(env.proxy, "http://127.0.0.1:3128")
    env.cargo_file.write_text(text)

    result = run_doctor(env, capsys)

    assert result.code == 1
    line = result.line("FAIL cargo config:")
    assert f"http.proxy = http://127.0.0.1:3128 in {env.cargo_file}, but the proxy listens on {env.proxy}" in line
    assert "cargo vouch setup --registry corp" in line


def test_proxy_without_scheme_is_the_same_proxy() -> None:
    assert doctor.same_proxy("127.0.0.1:9001", "http://127.0.0.1:9001")
    assert doctor.same_proxy("http://user:pw@127.0.0.1:9001/", "http://127.0.0.1:9001")
    assert not doctor.same_proxy("https://127.0.0.1:9001", "http://127.0.0.1:9001")
    assert not doctor.same_proxy("http://127.0.0.1:9002", "http://127.0.0.1:9001")
    assert not doctor.same_proxy("http://127.0.0.1:99999", "http://127.0.0.1:9001")


def test_index_differing_from_cargo_fails(env: Env, capsys, vouch_session: str) -> None:
    set_up(env, capsys)
    env.vouch_config.write_text(env.vouch_config.read_text().replace("/index/", "/other-index/"))

    result = run_doctor(env, capsys)

    assert result.code == 1
    line = result.line("FAIL registry corp:")
    assert "Cargo's index is sparse+https://cargo.corp.example/index/" in line
    assert line.endswith("— make them the same")


# ---------------------------------------------------------------- environment


def test_cargo_http_proxy_overriding_fails(env: Env, capsys, vouch_session: str, monkeypatch) -> None:
    set_up(env, capsys)
    monkeypatch.setenv("CARGO_HTTP_PROXY", "http://user:pw@elsewhere:8080")

    result = run_doctor(env, capsys)

    assert result.code == 1
    assert result.line("FAIL environment:") == (
        f"FAIL environment: CARGO_HTTP_PROXY is set and overrides http.proxy — unset it (or set it to {env.proxy})"
    )
    assert result.line("ok   cargo config:")  # the files are right; the variable is the problem
    assert "elsewhere" not in result.out and "pw" not in result.out


def test_registry_host_in_no_proxy_fails(env: Env, capsys, vouch_session: str, monkeypatch) -> None:
    set_up(env, capsys)
    monkeypatch.setenv("NO_PROXY", "localhost,.corp.example")

    result = run_doctor(env, capsys)

    assert result.code == 1
    assert result.line("FAIL environment:") == (
        "FAIL environment: NO_PROXY covers cargo.corp.example, so Cargo and git bypass the proxy"
        " — remove that entry from NO_PROXY"
    )


def test_env_check_matches_setup_warnings(env: Env, monkeypatch) -> None:
    """Doctor and setup share one rule set: every setup warning is a doctor line."""

    monkeypatch.setenv("CARGO_HTTP_CAINFO", "/etc/ssl/other.pem")
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("CARGO_REGISTRY_TOKEN", "x")
    config = load_config(env.vouch_config)
    ca = paths.ca_cert_path()

    checks = doctor.check_environment(config.registries.values(), env.project, env.proxy, ca)
    warnings = [o.line for o in env_overrides("corp", SPARSE, env.proxy, str(ca), False)]

    assert [c.status for c in checks] == ["FAIL", "FAIL", "warn"]
    assert [f"{c.detail}; {c.hint}" for c in checks] == [w.split(": ", 1)[1] for w in warnings]


# ---------------------------------------------------------------- proxy and provider


def test_proxy_not_listening_fails_with_start_hint(env: Env, capsys, vouch_session: str) -> None:
    set_up(env, capsys)
    env.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread: nothing listens now
    env.listener.close()

    result = run_doctor(env, capsys)

    assert result.code == 1
    line = result.line("FAIL proxy:")
    assert f"nothing accepts connections on 127.0.0.1:{env.port}" in line
    assert "'cargo vouch proxy'" in line and 'mitmdump -s "$(cargo vouch addon-path)"' in line


def test_logged_out_fails_with_vouch_login(env: Env, capsys) -> None:
    set_up(env, capsys)  # no vouch_session: the double has no session

    result = run_doctor(env, capsys)

    assert result.code == 1
    line = result.line("FAIL provider corp:")
    assert "vouch credential cargo --: not authenticated for registry 'corp' - run 'vouch login' first" in line
    assert line.endswith("— then run 'cargo vouch doctor' again")
    assert "1 of 8 checks failed" in result.out


def test_provider_check_names_cargo_s_dialect_for_a_cargo_protocol_provider(env: Env, vouch_session: str) -> None:
    with env.vouch_config.open("a") as f:
        f.write('credential-provider = ["provider-cargo-strict"]\n')
    registry = load_config(env.vouch_config).registries["corp"]

    check = doctor.check_provider(registry)

    assert check.ok, check.line()
    assert check.detail.startswith("provider-cargo-strict: subject=alice@example.com expires in 7h5")
    assert check.detail.endswith('; answers in Cargo\'s protocol ({"Ok":…}/{"Err":…})')


def test_logged_out_vouch_dialect_error_is_named(env: Env) -> None:
    registry = load_config(env.vouch_config).registries["corp"]

    check = doctor.check_provider(registry)

    assert not check.ok and "run 'vouch login' first; answers in Vouch's dialect (unwrapped)" in check.detail


def test_expired_token_fails(env: Env, vouch_session: str) -> None:
    registry = load_config(env.vouch_config).registries["corp"]

    check = doctor.check_provider(registry, now=time.time() + 9 * 3600)

    assert not check.ok and "expired 1h00m ago" in check.detail and check.hint == "run 'vouch login'"


def test_provider_that_crashes_fails_with_its_message(env: Env, capsys) -> None:
    with env.vouch_config.open("a") as f:
        f.write('credential-provider = ["provider-crash"]\n')
    registry = load_config(env.vouch_config).registries["corp"]

    check = doctor.check_provider(registry)

    assert not check.ok and "provider-crash" in check.detail and "exited with status" in check.detail
    assert "vouch login" in check.hint


# ---------------------------------------------------------------- config and cargo


def test_config_error_is_one_line_and_stops(env: Env, capsys) -> None:
    with env.vouch_config.open("a") as f:
        f.write("colour = true\n")

    result = run_doctor(env, capsys)

    assert result.code == 1
    line = result.line("FAIL config:")
    assert line.startswith(f"FAIL config: {env.vouch_config}: registries.corp.colour: unknown key")
    assert len(result.out.splitlines()) == 3  # cargo, config, summary


def test_unknown_registry_fails(env: Env, capsys) -> None:
    result = run_doctor(env, capsys, "--registry", "nope")

    assert result.code == 1
    assert result.line("FAIL config:").endswith(
        "no [registries.nope] — run 'cargo vouch setup --registry nope' in the project (it adds the registry)"
    )


def test_top_level_config_option_is_used(env: Env, capsys, tmp_path: Path) -> None:
    other = write(tmp_path / "other.toml", "[proxy]\nlisten = '127.0.0.1:9'\n")
    parser = argparse.ArgumentParser(prog="cargo-vouch")
    parser.add_argument("--config")
    doctor.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["--config", str(other), "doctor", "--manifest-dir", str(env.project)])

    assert args.func(args) == 1
    assert f"FAIL config: {other}: no [registries.NAME]" in capsys.readouterr().out


def test_cargo_missing_fails(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("CARGO", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))

    check = doctor.check_cargo(tmp_path)

    assert not check.ok and check.detail == "no cargo on PATH" and "rustup.rs" in check.hint


def test_cargo_that_fails_shows_its_error(tmp_path: Path, monkeypatch) -> None:
    script = write(tmp_path / "cargo", "#!/bin/sh\necho 'error: no default toolchain' >&2\nexit 1\n")
    script.chmod(0o755)
    monkeypatch.setenv("CARGO", str(script))

    check = doctor.check_cargo(tmp_path)

    assert not check.ok and "error: no default toolchain" in check.detail and "(from $CARGO)" in check.detail


def test_current_cargo_has_no_note(tmp_path: Path, monkeypatch) -> None:
    fake_cargo(tmp_path, "cargo 1.80.1 (376290515 2024-07-16)")
    monkeypatch.setenv("CARGO", str(tmp_path / "cargo"))

    check = doctor.check_cargo(tmp_path)

    assert check.ok and check.detail == "cargo 1.80.1 (376290515 2024-07-16) (from $CARGO)"


@pytest.mark.skipif(REAL_CARGO is None, reason="no cargo on PATH")
def test_real_cargo_version(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("CARGO", raising=False)
    monkeypatch.setenv("RUSTUP_HOME", REAL_RUSTUP_HOME)

    check = doctor.check_cargo(tmp_path)

    assert check.ok, check.line()
    assert check.detail.startswith("cargo 1.")


# ---------------------------------------------------------------- git-fetch-with-cli


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_index_fetched_by_git_cli(env: Env, capsys, vouch_session: str, monkeypatch) -> None:
    write(env.cargo_file, f'[registries.corp]\nindex = "{GIT_INDEX}"\n\n[net]\ngit-fetch-with-cli = true\n')
    env.vouch_config.write_text(env.vouch_config.read_text().replace(SPARSE, GIT_INDEX))
    set_up(env, capsys)

    passing = run_doctor(env, capsys)
    assert passing.code == 0, passing.out
    assert f"git fetches {GIT_INDEX} through {env.proxy}" in passing.line("ok   git corp:")

    monkeypatch.setenv("GIT_SSL_CAINFO", "/etc/ssl/certs/ca-certificates.crt")
    subprocess.run(["git", "config", "--global", "--unset", f"http.{GIT_INDEX}.proxy"], check=True)

    failing = run_doctor(env, capsys)
    assert failing.code == 1
    assert f"git's http.proxy for {GIT_INDEX} is not set" in failing.line("FAIL git corp:")
    assert "GIT_SSL_CAINFO is set" in failing.line("FAIL environment:")


@pytest.mark.parametrize(
    "index,names",
    [
        (SPARSE, "the registry's git index URL"),
        ("sparse+https://art.corp.example/artifactory/api/cargo/crates/index/",
         "its git index, https://art.corp.example/artifactory/git/crates.git,"),
        ("sparse+https://gitea.corp.example/api/packages/team/cargo/",
         "its git index, https://gitea.corp.example/team/_cargo-index.git,"),
    ],
)
def test_old_cargo_against_a_sparse_index_fails_naming_the_git_index(env: Env, capsys, vouch_session: str, tmp_path,
                                                                     index: str, names: str) -> None:
    fake_cargo(tmp_path / "cargo-bin", "cargo 1.65.0")
    write(env.cargo_file, f'[registries.corp]\nindex = "{index}"\n')
    env.vouch_config.write_text(env.vouch_config.read_text().replace(SPARSE, index))
    set_up(env, capsys)

    result = run_doctor(env, capsys)

    line = result.line("FAIL registry corp:")
    assert f"index {index} is a sparse index — Cargo 1.65 cannot read a sparse index (Cargo reads them from 1.68)" in line
    assert names in line


def test_a_registry_the_project_does_not_use_is_skipped_not_failed(env: Env, capsys, vouch_session: str) -> None:
    """One cargo-vouch config serves many projects: doctor failed a project for not naming
    every registry in it, and advised adding the unused one to the project."""
    set_up(env, capsys)
    with env.vouch_config.open("a") as f:
        f.write('\n[registries.other]\nindex = "sparse+https://other.example/index/"\n')
    run_cli(capsys, "ca", "init")  # the CA now covers other.example too

    result = run_doctor(env, capsys)

    line = result.line("warn registry other:")
    assert "does not use it" in line and "doctor --registry NAME" in line
    lines = result.out.splitlines()
    assert "other" not in "".join(text for text in lines if text.startswith("FAIL")), result.out
    assert not any(text.startswith(("ok   provider other", "FAIL provider other")) for text in lines)


def test_a_proxy_address_whose_holder_cannot_be_told_is_not_ok(env: Env, monkeypatch) -> None:
    """A holder that closes each connection and its listener at once slipped past the owner
    lookup, and doctor called it the proxy (review 17)."""
    from cargo_vouch.proxy import peers

    monkeypatch.setattr(peers, "server_owner", lambda connection: None)
    monkeypatch.setattr(peers, "listening_owners", lambda port, address=None: set())
    check = doctor.check_proxy(load_config(env.vouch_config).proxy.listen)
    assert not check.ok and "who holds it cannot be told" in check.detail and "ss -ltnp" in check.hint


def test_a_holder_that_answers_then_vanishes_is_not_reported_as_nothing_listening(env: Env, monkeypatch) -> None:
    """Review 18: a squatter that answered once and then closed its listener made doctor's
    retry say 'nothing accepts connections ... start it'."""
    from cargo_vouch.cli import listening

    answers = itertools.chain([listening.Listener(True)], itertools.repeat(listening.Listener(False, "Connection refused")))
    monkeypatch.setattr(listening, "_probe_once", lambda listen, timeout: next(answers))
    check = doctor.check_proxy(load_config(env.vouch_config).proxy.listen)
    assert not check.ok and "who holds it cannot be told" in check.detail
