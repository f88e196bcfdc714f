"""`cargo-vouch setup`: what it writes into Cargo's, cargo-vouch's and git's config, and that
`--remove` takes exactly that back."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import tomlkit

from cargo_vouch import cargo_config, paths
from cargo_vouch.cli.main import main
from cargo_vouch.cli.setup.records import records_path
from tests.unit.conftest import CARGO_SETUP_ENV

SPARSE = "sparse+https://cargo.corp.example/index/"
GIT_INDEX = "https://git.corp.example/cargo/index.git"
PROXY = "http://127.0.0.1:9001"



@dataclass
class Env:
    root: Path
    project: Path
    cargo_home: Path
    vouch_config: Path
    gitconfig: Path

    @property
    def target(self) -> Path:
        return self.project / ".cargo" / "config.toml"


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    rustup_home = os.environ.get("RUSTUP_HOME") or str(Path.home() / ".rustup")
    home = tmp_path / "home"
    home.mkdir()
    e = Env(
        root=tmp_path,
        project=tmp_path / "work" / "project",
        cargo_home=tmp_path / "cargo-home",
        vouch_config=tmp_path / "vouch-config" / "config.toml",
        gitconfig=home / ".gitconfig",
    )
    e.project.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("CARGO_HOME", str(e.cargo_home))
    monkeypatch.setenv("CARGO_VOUCH_HOME", str(tmp_path / "vouch-home"))
    monkeypatch.setenv("CARGO_VOUCH_CONFIG", str(e.vouch_config))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(e.gitconfig))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    # setup asks `cargo --version`; rustup's proxy would write its settings into the test's HOME.
    monkeypatch.setenv("RUSTUP_HOME", rustup_home)
    for var in CARGO_SETUP_ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return e


def setup(capsys: pytest.CaptureFixture[str], *argv: str) -> Result:
    """Run `cargo-vouch setup ARGV` through the real command line's entry point."""
    code = main(["setup", *argv])
    out, err = capsys.readouterr()
    return Result(code, out, err)


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def git_global(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "config", "--global", *args], capture_output=True, text=True)


def tree(root: Path) -> dict[str, bytes]:
    """Every file under root with its bytes, to show that nothing at all was written."""
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


PROJECT_CONFIG = """\
# Team settings; keep this comment.
[build]
jobs = 4  # four jobs

[registries.corp]
index = "sparse+https://cargo.corp.example/index/"

[http]
# slow VPN
timeout = 60

[net]
retry = 3
"""


# ---------------------------------------------------------------- writing


def test_writes_proxy_and_cainfo_keeping_comments_and_order(env: Env, capsys) -> None:
    write(env.target, PROJECT_CONFIG)

    result = setup(capsys, "--registry", "corp", "--manifest-dir", str(env.project))

    assert result.code == 0, result.err
    text = env.target.read_text()
    doc = tomlkit.parse(text)
    assert doc["http"]["proxy"] == PROXY
    assert doc["http"]["cainfo"] == str(paths.ca_cert_path())
    assert doc["http"]["timeout"] == 60
    # every original line survives, in the original order
    remaining = iter(text.splitlines())
    assert all(line in remaining for line in PROJECT_CONFIG.splitlines())
    assert str(env.target) in result.out


def test_second_run_changes_nothing_and_says_so(env: Env, capsys) -> None:
    write(env.target, PROJECT_CONFIG)
    assert setup(capsys, "--registry", "corp", "--manifest-dir", str(env.project)).code == 0
    before = tree(env.root)

    result = setup(capsys, "--registry", "corp", "--manifest-dir", str(env.project))

    assert result.code == 0
    assert "nothing changed" in result.out
    assert tree(env.root) == before


def test_defaults_to_current_directory(env: Env, capsys, monkeypatch) -> None:
    write(env.target, PROJECT_CONFIG)
    monkeypatch.chdir(env.project)

    assert setup(capsys, "--registry", "corp").code == 0

    assert tomlkit.parse(env.target.read_text())["http"]["proxy"] == PROXY


def test_global_writes_cargo_home_config(env: Env, capsys) -> None:
    write(env.cargo_home / "config.toml", f'[registries.corp]\nindex = "{SPARSE}"\n')

    result = setup(capsys, "--registry", "corp", "--global")

    assert result.code == 0, result.err
    doc = tomlkit.parse((env.cargo_home / "config.toml").read_text())
    assert doc["http"]["proxy"] == PROXY
    assert not (env.project / ".cargo").exists()


def test_listen_sets_proxy_address(env: Env, capsys) -> None:
    write(env.target, PROJECT_CONFIG)

    result = setup(capsys, "--registry", "corp", "--manifest-dir", str(env.project), "--listen", "[::1]:9100")

    assert result.code == 0, result.err
    assert tomlkit.parse(env.target.read_text())["http"]["proxy"] == "http://[::1]:9100"


def test_listen_defaults_to_the_proxy_config(env: Env, capsys) -> None:
    write(env.target, PROJECT_CONFIG)
    write(env.vouch_config, '[proxy]\nlisten = "127.0.0.1:9200"\n')

    assert setup(capsys, "--registry", "corp", "--manifest-dir", str(env.project)).code == 0

    assert tomlkit.parse(env.target.read_text())["http"]["proxy"] == "http://127.0.0.1:9200"


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (
            f'registries.corp.index = "{SPARSE}"\nhttp.timeout = 60\nnet.retry = 3\n',
            f'registries.corp.index = "{SPARSE}"\nhttp.timeout = 60\nhttp.proxy = "{PROXY}"\n'
            'http.cainfo = "CA"\nnet.retry = 3\n',
        ),
        (
            f'registries.corp.index = "{SPARSE}"\nhttp = {{ timeout = 60 }}\n',
            None,  # an inline table stays inline
        ),
    ],
)
def test_dotted_and_inline_http_keep_their_form(env: Env, capsys, before: str, after: str | None) -> None:
    write(env.target, before)

    assert setup(capsys, "--registry", "corp", "--manifest-dir", str(env.project)).code == 0

    text = env.target.read_text()
    if after is not None:
        assert text == after.replace("CA", str(paths.ca_cert_path()))
    else:
        assert text.startswith(f'registries.corp.index = "{SPARSE}"\nhttp = {{ timeout = 60, ')
        assert "[http]" not in text
    assert tomlkit.parse(text)["http"]["cainfo"] == str(paths.ca_cert_path())


def test_keeps_file_mode_and_crlf(env: Env, capsys) -> None:
    write(env.target, PROJECT_CONFIG.replace("\n", "\r\n"))
    env.target.chmod(0o640)

    assert setup(capsys, "--registry", "corp", "--manifest-dir", str(env.project)).code == 0

    data = env.target.read_bytes()
    assert data.count(b"\n") == data.count(b"\r\n")
    assert stat.S_IMODE(env.target.stat().st_mode) == 0o640
    assert not [p for p in env.target.parent.iterdir() if p.name != "config.toml"]  # no temp left


def test_edits_legacy_config_that_cargo_reads(env: Env, capsys) -> None:
    legacy = write(env.project / ".cargo" / "config", PROJECT_CONFIG)

    assert setup(capsys, "--registry", "corp", "--manifest-dir", str(env.project)).code == 0

    assert tomlkit.parse(legacy.read_text())["http"]["proxy"] == PROXY
    assert not env.target.exists()


# ---------------------------------------------------------------- dry run


def test_dry_run_prints_diff_and_writes_nothing(env: Env, capsys) -> None:
    write(env.target, PROJECT_CONFIG)
    before = tree(env.root)

    result = setup(capsys, "--registry", "corp", "--manifest-dir", str(env.project), "--dry-run")

    assert result.code == 0
    assert tree(env.root) == before
    assert f"--- {env.target}" in result.out
    assert f'+proxy = "{PROXY}"' in result.out
    assert "--- /dev/null" in result.out and f"+++ {env.vouch_config}" in result.out
    assert f'+index = "{SPARSE}"' in result.out


def test_dry_run_remove_writes_nothing(env: Env, capsys) -> None:
    write(env.target, PROJECT_CONFIG)
    assert setup(capsys, "--registry", "corp", "--manifest-dir", str(env.project)).code == 0
    before = tree(env.root)

    result = setup(capsys, "--manifest-dir", str(env.project), "--remove", "--dry-run")

    assert result.code == 0
    assert tree(env.root) == before
    assert f'-proxy = "{PROXY}"' in result.out


# ---------------------------------------------------------------- remove


def test_remove_restores_existing_file_byte_for_byte(env: Env, capsys) -> None:
    original = (
        PROJECT_CONFIG.replace("[http]\n# slow VPN\ntimeout = 60\n", '[http]\nproxy = "http://corp:3128"  # corporate\n')
        + "# trailing comment without newline"
    ).encode()
    write(env.target, original)
    before = tree(env.root)
    assert setup(capsys, "--registry", "corp", "--manifest-dir", str(env.project)).code == 0
    assert env.target.read_bytes() != original

    result = setup(capsys, "--registry", "corp", "--manifest-dir", str(env.project), "--remove")

    assert result.code == 0, result.err
    assert env.target.read_bytes() == original
    assert not env.vouch_config.exists()  # setup created it, remove took it away
    after = {k: v for k, v in tree(env.root).items() if "vouch-home" not in k}
    assert after == before


def test_remove_deletes_file_and_dir_setup_created(env: Env, capsys) -> None:
    write(env.cargo_home / "config.toml", f'[registries.corp]\nindex = "{SPARSE}"\n')
    assert setup(capsys, "--registry", "corp", "--manifest-dir", str(env.project)).code == 0
    assert env.target.exists()

    result = setup(capsys, "--registry", "corp", "--manifest-dir", str(env.project), "--remove")

    assert result.code == 0
    assert not (env.project / ".cargo").exists()
    assert "deleted" in result.out


def test_remove_after_user_edit_takes_back_only_setup_keys(env: Env, capsys) -> None:
    write(env.target, PROJECT_CONFIG.replace("timeout = 60", 'timeout = 60\nproxy = "http://corp:3128"'))
    assert setup(capsys, "--registry", "corp", "--manifest-dir", str(env.project)).code == 0
    with env.target.open("a") as handle:
        handle.write("\n[term]\nverbose = true\n")

    result = setup(capsys, "--manifest-dir", str(env.project), "--remove")

    assert result.code == 0
    doc = tomlkit.parse(env.target.read_text())
    assert doc["http"]["proxy"] == "http://corp:3128"  # the previous value is back
    assert "cainfo" not in doc["http"]
    assert doc["term"]["verbose"] is True  # the user's edit stays
    assert "edited after setup" in result.out


def test_remove_without_record_changes_nothing(env: Env, capsys) -> None:
    write(env.target, PROJECT_CONFIG)

    result = setup(capsys, "--manifest-dir", str(env.project), "--remove")

    assert result.code == 0
    assert "nothing to remove" in result.out
    assert env.target.read_text() == PROJECT_CONFIG


def test_remove_keeps_registry_another_project_still_uses(env: Env, capsys) -> None:
    other = env.root / "work" / "other"
    write(env.cargo_home / "config.toml", f'[registries.corp]\nindex = "{SPARSE}"\n')
    other.mkdir()
    assert setup(capsys, "--registry", "corp", "--manifest-dir", str(env.project)).code == 0
    assert setup(capsys, "--registry", "corp", "--manifest-dir", str(other)).code == 0

    assert setup(capsys, "--manifest-dir", str(env.project), "--remove").code == 0
    assert "corp" in tomlkit.parse(env.vouch_config.read_text())["registries"]

    assert setup(capsys, "--manifest-dir", str(other), "--remove").code == 0
    assert not env.vouch_config.exists()


# ---------------------------------------------------------------- cargo-vouch config


def test_adds_registry_to_vouch_config_keeping_the_rest(env: Env, capsys) -> None:
    write(env.target, PROJECT_CONFIG)
    original = '# my proxy\n[proxy]\nlisten = "127.0.0.1:9001"\n\n[registries.other]\nindex = "sparse+https://o.example/"\n'
    write(env.vouch_config, original)

    result = setup(capsys, "--registry", "corp", "--manifest-dir", str(env.project))

    assert result.code == 0
    text = env.vouch_config.read_text()
    assert text.startswith(original)
    assert tomlkit.parse(text)["registries"]["corp"]["index"] == SPARSE
    assert str(env.vouch_config) in result.out

    assert setup(capsys, "--registry", "corp", "--manifest-dir", str(env.project), "--remove").code == 0
    assert env.vouch_config.read_text() == original


def test_explicit_config_option_is_used(env: Env, capsys) -> None:
    write(env.target, PROJECT_CONFIG)
    chosen = env.root / "elsewhere" / "vouch.toml"

    assert setup(capsys, "--registry", "corp", "--manifest-dir", str(env.project), "--config", str(chosen)).code == 0

    assert tomlkit.parse(chosen.read_text())["registries"]["corp"]["index"] == SPARSE
    assert not env.vouch_config.exists()


def test_registry_with_other_index_is_left_and_warned(env: Env, capsys) -> None:
    write(env.target, PROJECT_CONFIG)
    original = '[registries.corp]\nindex = "sparse+https://old.example/index/"\n'
    write(env.vouch_config, original)

    result = setup(capsys, "--registry", "corp", "--manifest-dir", str(env.project))

    assert result.code == 0
    assert env.vouch_config.read_text() == original
    assert "differs" in result.err and "registries.corp" in result.err


# ---------------------------------------------------------------- git


def git_project(env: Env) -> None:
    write(
        env.target,
        f'[registries.corp]\nindex = "{GIT_INDEX}"\n\n[net]\ngit-fetch-with-cli = true\n',
    )


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_fetch_with_cli_writes_only_url_scoped_git_settings(env: Env, capsys) -> None:
    git_project(env)
    assert git_global("user.name", "Dev").returncode == 0
    assert git_global(f"http.{GIT_INDEX}.proxy", "http://old-proxy:3128").returncode == 0
    original = env.gitconfig.read_bytes()

    result = setup(capsys, "--registry", "corp", "--manifest-dir", str(env.project))

    assert result.code == 0, result.err
    assert git_global("--get", f"http.{GIT_INDEX}.proxy").stdout.strip() == PROXY
    assert git_global("--get", f"http.{GIT_INDEX}.sslCAInfo").stdout.strip() == str(paths.ca_cert_path())
    assert git_global("--get", "http.proxy").returncode == 1  # never unscoped
    assert git_global("--get", "http.sslCAInfo").returncode == 1

    result = setup(capsys, "--registry", "corp", "--manifest-dir", str(env.project), "--remove")

    assert result.code == 0, result.err
    assert git_global("--get", f"http.{GIT_INDEX}.proxy").stdout.strip() == "http://old-proxy:3128"
    assert git_global("--get", f"http.{GIT_INDEX}.sslCAInfo").returncode == 1
    assert git_global("--get", "user.name").stdout.strip() == "Dev"
    assert env.gitconfig.read_bytes() == original


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_fetch_with_cli_from_env_with_sparse_index_writes_no_git(env: Env, capsys, monkeypatch) -> None:
    write(env.target, PROJECT_CONFIG)
    monkeypatch.setenv("CARGO_NET_GIT_FETCH_WITH_CLI", "true")

    assert setup(capsys, "--registry", "corp", "--manifest-dir", str(env.project)).code == 0

    assert not env.gitconfig.exists()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_dry_run_shows_git_commands_and_runs_none(env: Env, capsys) -> None:
    git_project(env)

    result = setup(capsys, "--registry", "corp", "--manifest-dir", str(env.project), "--dry-run")

    assert result.code == 0
    assert f"http.{GIT_INDEX}.proxy {PROXY}" in result.out
    assert not env.gitconfig.exists()


# ---------------------------------------------------------------- refusals and warnings


def test_undefined_registry_is_a_clear_error(env: Env, capsys) -> None:
    write(env.target, "[build]\njobs = 2\n")
    before = tree(env.root)

    result = setup(capsys, "--registry", "nope", "--manifest-dir", str(env.project))

    assert result.code == 1
    assert len(result.err.strip().splitlines()) == 1
    assert "'nope' is not defined" in result.err and "CARGO_REGISTRIES_NOPE_INDEX" in result.err
    assert tree(env.root) == before


def test_index_from_environment(env: Env, capsys, monkeypatch) -> None:
    monkeypatch.setenv("CARGO_REGISTRIES_MY_REG_INDEX", SPARSE)

    assert setup(capsys, "--registry", "my-reg", "--manifest-dir", str(env.project)).code == 0

    assert tomlkit.parse(env.vouch_config.read_text())["registries"]["my-reg"]["index"] == SPARSE


@pytest.mark.parametrize("listen", ["0.0.0.0:9001", "192.168.1.5:9001", "proxy.example:9001"])
def test_non_loopback_listen_is_refused(env: Env, capsys, listen: str) -> None:
    write(env.target, PROJECT_CONFIG)
    before = tree(env.root)

    result = setup(capsys, "--registry", "corp", "--manifest-dir", str(env.project), "--listen", listen)

    assert result.code == 2
    assert len(result.err.strip().splitlines()) == 1
    assert "not a loopback address" in result.err
    assert tree(env.root) == before


def test_invalid_toml_is_refused_naming_file_and_line(env: Env, capsys) -> None:
    write(env.target, PROJECT_CONFIG + "broken = = 1\n")
    before = tree(env.root)

    result = setup(capsys, "--registry", "corp", "--manifest-dir", str(env.project))

    assert result.code == 1
    assert str(env.target) in result.err and "line 14" in result.err
    assert tree(env.root) == before


def test_missing_registry_option_is_usage_error(env: Env, capsys) -> None:
    result = setup(capsys, "--manifest-dir", str(env.project))

    assert result.code == 2
    assert "--registry" in result.err


def test_environment_that_defeats_setup_is_warned(env: Env, capsys, monkeypatch) -> None:
    write(env.target, PROJECT_CONFIG)
    monkeypatch.setenv("CARGO_HTTP_PROXY", "http://elsewhere:8080")
    monkeypatch.setenv("CARGO_HTTP_CAINFO", "/etc/ssl/other.pem")
    monkeypatch.setenv("NO_PROXY", "localhost,.corp.example")
    monkeypatch.setenv("CARGO_REGISTRIES_CORP_TOKEN", "s3cret-static-token")

    result = setup(capsys, "--registry", "corp", "--manifest-dir", str(env.project))

    assert result.code == 0
    for name in ("CARGO_HTTP_PROXY", "CARGO_HTTP_CAINFO", "NO_PROXY covers cargo.corp.example", "CARGO_REGISTRIES_CORP_TOKEN"):
        assert name in result.err
    assert "s3cret-static-token" not in result.err + result.out
    assert "http://elsewhere:8080" not in result.err


def test_no_warnings_in_a_clean_environment(env: Env, capsys, monkeypatch) -> None:
    write(env.target, PROJECT_CONFIG)
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1,example.org")
    monkeypatch.setenv("CARGO_HTTP_PROXY", PROXY)  # already the proxy: harmless

    result = setup(capsys, "--registry", "corp", "--manifest-dir", str(env.project))

    assert result.code == 0
    assert "warning:" not in result.err


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_ssl_cainfo_is_warned_for_git_cli(env: Env, capsys, monkeypatch) -> None:
    git_project(env)
    monkeypatch.setenv("GIT_SSL_CAINFO", "/etc/ssl/certs/ca.pem")

    result = setup(capsys, "--registry", "corp", "--manifest-dir", str(env.project))

    assert result.code == 0
    assert "GIT_SSL_CAINFO" in result.err


def test_setup_record_holds_no_unrelated_secrets(env: Env, capsys) -> None:
    write(env.target, PROJECT_CONFIG + '\n[registries.corp2]\nindex = "x"\ntoken = "do-not-copy"\n')

    assert setup(capsys, "--registry", "corp", "--manifest-dir", str(env.project)).code == 0

    record = records_path()
    assert record.is_relative_to(env.root / "vouch-home")
    assert b"do-not-copy" not in record.read_bytes()
    assert stat.S_IMODE(record.stat().st_mode) == 0o600


# ---------------------------------------------------------------- cargo_config


def test_cargo_config_lookup_order(env: Env, monkeypatch) -> None:
    write(env.cargo_home / "config.toml", '[registries.a]\nindex = "home"\n[registries.b]\nindex = "home"\n')
    write(env.project.parent / ".cargo" / "config.toml", '[registries.a]\nindex = "parent"\n[net]\ngit-fetch-with-cli = true\n')
    write(env.project / ".cargo" / "config", '[registries.a]\nindex = "legacy"\n')
    write(env.project / ".cargo" / "config.toml", '[registries.a]\nindex = "ignored"\n')

    assert cargo_config.registry_index("a", env.project).value == "legacy"
    assert cargo_config.registry_index("b", env.project).value == "home"
    assert cargo_config.registry_index("c", env.project) is None
    assert cargo_config.git_fetch_with_cli(env.project) is True
    monkeypatch.setenv("CARGO_NET_GIT_FETCH_WITH_CLI", "false")
    assert cargo_config.git_fetch_with_cli(env.project) is False
    monkeypatch.setenv("CARGO_REGISTRIES_B_INDEX", "env")
    assert cargo_config.registry_index("b", env.project) == cargo_config.Found("env", "env CARGO_REGISTRIES_B_INDEX")


# ---------------------------------------------------------------- nothing lost


def test_an_edit_made_while_setup_waited_is_kept_and_setup_stops(env: Env, capsys, monkeypatch) -> None:
    """Setup reads the files, then reads config.json through the provider (seconds, a touch
    or a PIN), then writes: it wrote the text it planned over what the user saved meanwhile."""
    from cargo_vouch.cli.setup import command

    write(env.target, PROJECT_CONFIG)
    edited = PROJECT_CONFIG + "\n[term]\nverbose = true\n"

    def slow_provider(*args: object) -> tuple[list[str], list[str]]:
        env.target.write_text(edited)  # the user saves the file while the provider runs
        return [], []

    monkeypatch.setattr(command, "hosts_of", slow_provider)
    before = env.vouch_config.read_bytes() if env.vouch_config.exists() else None
    result = setup(capsys, "--registry", "corp", "--manifest-dir", str(env.project))

    assert result.code == 1
    assert result.err.strip() == f"cargo-vouch: {env.target} changed while setup ran; nothing was written: run setup again"
    assert env.target.read_text() == edited
    assert (env.vouch_config.read_bytes() if env.vouch_config.exists() else None) == before
    assert not records_path().exists()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_git_config_that_cannot_be_written_takes_back_the_file_edits(env: Env, capsys) -> None:
    """git failed after the Cargo and cargo-vouch configs were written and before the record
    was: the edits stayed, '--remove' said 'nothing to remove', and a second setup said
    'already set up'. (A `.gitconfig.lock` is what a concurrent `git config` holds.)"""
    git_project(env)
    assert git_global(f"http.{GIT_INDEX}.proxy", "http://old-proxy:3128").returncode == 0
    files_before = tree(env.root)
    write(env.gitconfig.with_name(".gitconfig.lock"), "")

    result = setup(capsys, "--registry", "corp", "--manifest-dir", str(env.project))

    assert result.code == 1
    assert "could not lock config file" in result.err and "the edits before it were taken back" in result.err
    env.gitconfig.with_name(".gitconfig.lock").unlink()
    assert tree(env.root) == files_before
    assert git_global("--get", f"http.{GIT_INDEX}.proxy").stdout.strip() == "http://old-proxy:3128"


def test_setups_run_at_once_lose_nothing(env: Env, tmp_path: Path) -> None:
    """Six setups at once, each adding its registry to the one cargo-vouch config and its
    project to the one record: each wrote back what it had read, and 2 of 6 survived."""
    names = [f"r{n}" for n in range(6)]
    projects = []
    for name in names:
        project = tmp_path / "work" / name
        write(project / ".cargo" / "config.toml", f'[registries.{name}]\nindex = "sparse+https://{name}.example/index/"\n')
        projects.append(project)
    runs = [
        subprocess.Popen([sys.executable, "-m", "cargo_vouch.cli", "setup", "--registry", name,
                          "--manifest-dir", str(project)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, project in zip(names, projects, strict=True)
    ]
    outcomes = [run.communicate(timeout=120) + (run.returncode,) for run in runs]
    assert all(code == 0 for _, _, code in outcomes), outcomes
    configured = tomlkit.parse(env.vouch_config.read_text())["registries"]
    assert sorted(configured) == names
    recorded = json.loads(records_path().read_text())["targets"]
    assert sorted(recorded) == sorted(str(p / ".cargo" / "config.toml") for p in projects)


def test_a_ca_issued_again_for_another_registry_says_to_restart_the_proxy(env: Env, capsys, tmp_path: Path) -> None:
    """A running proxy keeps signing with the CA it loaded; Cargo trusts the new one only,
    and every registry's fetch then failed TLS with no word from setup."""
    write(env.target, PROJECT_CONFIG)
    first = setup(capsys, "--registry", "corp", "--manifest-dir", str(env.project))
    assert first.code == 0 and "restart" not in first.out
    other = tmp_path / "work" / "other"
    write(other / ".cargo" / "config.toml", '[registries.corp2]\nindex = "sparse+https://cargo2.corp.example/index/"\n')

    second = setup(capsys, "--registry", "corp2", "--manifest-dir", str(other))

    assert second.code == 0, second.err
    assert "issued the CA (registry hosts changed)" in second.out
    assert "restart a running 'cargo vouch proxy' (or mitmdump): it still signs with the old CA" in second.out


def test_taking_back_a_failed_setup_keeps_an_edit_made_meanwhile(env: Env, capsys, monkeypatch) -> None:
    """Review 17: the undo wrote the pre-setup text back over an edit the user saved after
    setup wrote the file, and called that 'taken back'."""
    from cargo_vouch.cli.setup import command
    from cargo_vouch.cli.setup.plan import SetupError

    git_project(env)
    edited: list[str] = []

    def git_fails(key: str, values: list[str]) -> None:
        if not edited:
            edited.append(env.target.read_text() + "\n[term]\nverbose = true\n")
            env.target.write_text(edited[0])  # the user saves the file just then
            raise SetupError("git config --global: could not lock config file")

    monkeypatch.setattr(command, "git_set", git_fails)
    result = setup(capsys, "--registry", "corp", "--manifest-dir", str(env.project))

    assert result.code == 1
    assert "could not be taken back: 'cargo vouch setup --remove' undoes them" in result.err
    assert env.target.read_text() == edited[0]


def test_a_project_config_linked_outside_the_project_is_refused(env: Env, capsys, tmp_path: Path) -> None:
    """Review 17: a cloned repository's `.cargo/config.toml -> ../../.cargo/config.toml`
    made a project setup edit the user's global Cargo config."""
    outside = write(tmp_path / "outside" / "config.toml", PROJECT_CONFIG)
    (env.project / ".cargo").mkdir()
    (env.project / ".cargo" / "config.toml").symlink_to(outside)

    result = setup(capsys, "--registry", "corp", "--manifest-dir", str(env.project))

    assert result.code == 1
    assert f"is a link to {outside}, outside {env.project}" in result.err
    assert outside.read_text() == PROJECT_CONFIG


def test_a_setup_waiting_for_another_says_so_and_gives_up(env: Env, capsys, monkeypatch) -> None:
    """Review 17: a setup behind another one's lock waited silently, for ever."""
    import fcntl

    from cargo_vouch.cli.setup import records

    write(env.target, PROJECT_CONFIG)
    monkeypatch.setattr(records, "LOCK_WAIT_SECONDS", 0.3)
    records_path().parent.mkdir(parents=True)
    holder = os.open(records_path().parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        result = setup(capsys, "--registry", "corp", "--manifest-dir", str(env.project))
    finally:
        os.close(holder)
    assert result.code == 1
    assert "waiting for another setup to finish" in result.err
    assert "another cargo-vouch setup has held" in result.err and "nothing was written" in result.err
    assert env.target.read_text() == PROJECT_CONFIG


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_taking_back_a_failed_setup_keeps_a_git_value_set_meanwhile(env: Env, capsys, monkeypatch) -> None:
    """Review 18: the undo set a git key back over a value the user set meanwhile."""
    from cargo_vouch.cli.setup import command
    from cargo_vouch.cli.setup.gitconfig import git_set
    from cargo_vouch.cli.setup.plan import SetupError

    git_project(env)
    calls: list[str] = []

    def second_key_fails(key: str, values: list[str]) -> None:
        calls.append(key)
        if len(calls) == 1:
            git_set(key, values)  # setup's first key is written...
            assert git_global("--replace-all", key, "http://users-own:3128").returncode == 0  # ...and changed by the user
            return
        if len(calls) == 2:
            raise SetupError("git config --global: could not lock config file")
        git_set(key, values)  # the undo

    monkeypatch.setattr(command, "git_set", second_key_fails)
    result = setup(capsys, "--registry", "corp", "--manifest-dir", str(env.project))

    assert result.code == 1 and "could not be taken back" in result.err
    assert git_global("--get-all", calls[0]).stdout.strip() == "http://users-own:3128"


def test_a_project_config_that_links_to_itself_is_one_line(env: Env, capsys) -> None:
    (env.project / ".cargo").mkdir()
    loop = env.project / ".cargo" / "config.toml"
    loop.symlink_to(loop)
    result = setup(capsys, "--registry", "corp", "--manifest-dir", str(env.project))
    assert result.code == 1
    assert result.err.strip() == f"cargo-vouch: {loop} is a link that leads nowhere (a loop); fix or remove it"
