"""What `cargo vouch run` tells CMD, decided from the config alone."""

from __future__ import annotations

import os
from pathlib import Path

from cargo_vouch.cli.run import ChildSettings, child_environment, exit_status, exposed_secrets, same_user_memory_readable
from cargo_vouch.config import parse_config

SETTINGS = ChildSettings(proxy_url="http://cargo-vouch:pw@127.0.0.1:4000", cainfo="/ca/cert.pem")


def config(**indexes: str):  # type: ignore[no-untyped-def]
    data = {"registries": {name: {"index": index} for name, index in indexes.items()}}
    return parse_config(data, Path("/cfg/config.toml"))


def test_git_settings_are_scoped_to_git_indexes_and_appended_after_the_callers() -> None:
    cfg = config(corp="https://git.corp.example/index.git", fast="sparse+https://cargo.corp.example/index/")
    base = {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "user.name", "GIT_CONFIG_VALUE_0": "ci"}
    env, _ = child_environment(base, cfg, SETTINGS)
    assert env["GIT_CONFIG_COUNT"] == "3"
    assert env["GIT_CONFIG_KEY_0"] == "user.name"
    assert env["GIT_CONFIG_KEY_1"] == "http.https://git.corp.example/index.git.proxy"
    assert env["GIT_CONFIG_VALUE_1"] == SETTINGS.proxy_url
    assert env["GIT_CONFIG_KEY_2"] == "http.https://git.corp.example/index.git.sslCAInfo"
    assert "cargo.corp.example" not in "".join(v for k, v in env.items() if k.startswith("GIT_CONFIG_KEY"))


def test_cmd_gets_placeholders_never_a_real_token_or_the_client_secret() -> None:
    cfg = config(corp="sparse+https://a.example/i/", other_reg="sparse+https://b.example/i/")
    env, _ = child_environment({"CARGO_REGISTRIES_CORP_TOKEN": "real-token"}, cfg, SETTINGS)
    assert env["CARGO_REGISTRIES_CORP_TOKEN"] == "cargo-vouch"
    assert env["CARGO_REGISTRIES_OTHER_REG_TOKEN"] == "cargo-vouch"
    ci = parse_config(
        {"registries": {"corp": {"index": "sparse+https://a.example/i/", "client-credentials": {
            "issuer": "https://vouch.example", "client-id": "ci", "client-secret-env": "VOUCH_CLIENT_SECRET"}}}},
        Path("/cfg/config.toml"),
    )
    env, _ = child_environment({"VOUCH_CLIENT_SECRET": "s3cret", "OTHER": "kept"}, ci, SETTINGS)
    assert "VOUCH_CLIENT_SECRET" not in env and env["OTHER"] == "kept"
    assert env["CARGO_HTTP_PROXY"] == SETTINGS.proxy_url and env["CARGO_HTTP_CAINFO"] == "/ca/cert.pem"


CI = {"registries": {"corp": {"index": "sparse+https://a.example/i/", "client-credentials": {
    "issuer": "https://vouch.example", "client-id": "ci", "client-secret-env": "VOUCH_CLIENT_SECRET"}}}}
SECRET = "ci-client-secret-5d1e8a2b"


def test_cmd_gets_no_copy_of_a_secret_under_another_name() -> None:
    ci = parse_config(CI, Path("/cfg/config.toml"))
    base = {"VOUCH_CLIENT_SECRET": SECRET, "CI_VOUCH_SECRET": SECRET, "CARGO_REGISTRIES_CORP_TOKEN": "real-token-0123456789",
            "TOKEN_COPY": "real-token-0123456789", "OTHER": "kept"}
    env, _ = child_environment(base, ci, SETTINGS)
    assert SECRET not in env.values() and "real-token-0123456789" not in env.values()
    assert env["OTHER"] == "kept" and env["CARGO_REGISTRIES_CORP_TOKEN"] == "cargo-vouch"


def test_cmd_gets_no_variable_that_holds_a_secret_inside_its_value() -> None:
    ci = parse_config(CI, Path("/cfg/config.toml"))
    base = {"VOUCH_CLIENT_SECRET": SECRET, "CI_JOB_SECRETS": f'{{"vouch":"{SECRET}"}}', "VOUCH_BASIC": f"ci:{SECRET}",
            "OTHER": "kept"}
    env, _ = child_environment(base, ci, SETTINGS)
    assert not [name for name, value in env.items() if SECRET in value]
    assert env["OTHER"] == "kept"


def fake_proc(root: Path, processes: dict[int, bytes], cmdlines: dict[int, bytes] | None = None) -> Path:
    for pid, environ in processes.items():
        (root / str(pid)).mkdir(parents=True)
        (root / str(pid) / "environ").write_bytes(environ)
        (root / str(pid) / "cmdline").write_bytes((cmdlines or {}).get(pid, b"prog\0"))
        (root / str(pid) / "comm").write_text(f"prog{pid}\n")
    (root / "self").mkdir()  # not a process id: skipped
    return root


def test_a_secret_s_value_anywhere_in_another_environment_is_found(tmp_path: Path) -> None:
    ci = parse_config(CI, Path("/cfg/config.toml"))
    proc = fake_proc(tmp_path, {
        10: b"PATH=/bin\0CI_VOUCH_SECRET=" + SECRET.encode() + b"\0",  # the step's shell, renamed
        11: b"HOME=/root\0",
        12: b"X=prefix" + SECRET.encode() + b"suffix\0",  # a daemon holding it inside another value
        os.getpid(): b"VOUCH_CLIENT_SECRET=" + SECRET.encode() + b"\0",  # run itself: not dumpable
    })
    found = exposed_secrets(ci, {"VOUCH_CLIENT_SECRET": SECRET}, proc)
    assert found == [
        "the value of VOUCH_CLIENT_SECRET is also in the environment of process 10 (prog10)",
        "the value of VOUCH_CLIENT_SECRET is also in the environment of process 12 (prog12)",
    ]


def test_a_secret_on_another_process_s_command_line_is_found(tmp_path: Path) -> None:
    """`sh -c "VOUCH_CLIENT_SECRET=… cargo vouch run -- …; next"`: the step's shell holds it
    in its command line, which every user can read, even where its environment is not."""
    ci = parse_config(CI, Path("/cfg/config.toml"))
    proc = fake_proc(tmp_path, {30: b"", 31: b"HOME=/\0"}, cmdlines={
        30: b"/bin/sh\0-c\0VOUCH_CLIENT_SECRET=" + SECRET.encode() + b" cargo-vouch run -- make; echo done\0",
    })
    assert exposed_secrets(ci, {"VOUCH_CLIENT_SECRET": SECRET}, proc) == [
        "the value of VOUCH_CLIENT_SECRET is also in the command line of process 30 (prog30)"
    ]


def test_a_short_secret_is_only_found_as_a_whole_value(tmp_path: Path) -> None:
    ci = parse_config(CI, Path("/cfg/config.toml"))
    proc = fake_proc(tmp_path, {20: b"A=xabcx\0", 21: b"B=abc\0"})
    assert exposed_secrets(ci, {"VOUCH_CLIENT_SECRET": "abc"}, proc) == [
        "the value of VOUCH_CLIENT_SECRET is also in the environment of process 21 (prog21)"
    ]


def test_without_secrets_nothing_is_read(tmp_path: Path) -> None:
    ci = parse_config(CI, Path("/cfg/config.toml"))
    assert exposed_secrets(ci, {}, tmp_path / "no-such-proc") == []


def test_memory_of_the_user_s_processes_is_readable_without_yama(tmp_path: Path) -> None:
    scope = tmp_path / "ptrace_scope"
    assert same_user_memory_readable(scope)  # no Yama at all
    scope.write_text("0\n")
    assert same_user_memory_readable(scope)
    scope.write_text("1\n")
    assert not same_user_memory_readable(scope)


def test_registry_hosts_are_taken_out_of_no_proxy_with_a_note() -> None:
    cfg = config(corp="sparse+https://cargo.corp.example/index/")
    env, notes = child_environment({"NO_PROXY": "localhost,.corp.example,10.0.0.1"}, cfg, SETTINGS)
    assert env["NO_PROXY"] == "localhost,10.0.0.1"
    assert notes == ["NO_PROXY: registry hosts taken out for CMD, so their requests go through the proxy"]
    untouched, notes = child_environment({"no_proxy": "localhost"}, cfg, SETTINGS)
    assert untouched["no_proxy"] == "localhost" and notes == []


def test_exit_status_follows_the_shell_convention() -> None:
    assert exit_status(7) == 7
    assert exit_status(-15) == 143


def test_git_ssl_cainfo_becomes_a_generic_setting_the_index_url_overrides() -> None:
    cfg = config(corp="https://git.corp.example/index.git")
    env, notes = child_environment({"GIT_SSL_CAINFO": "/etc/corp-bundle.pem"}, cfg, SETTINGS)
    assert "GIT_SSL_CAINFO" not in env
    keys = {env[f"GIT_CONFIG_KEY_{n}"]: env[f"GIT_CONFIG_VALUE_{n}"] for n in range(int(env["GIT_CONFIG_COUNT"]))}
    assert keys["http.sslCAInfo"] == "/etc/corp-bundle.pem"
    assert keys["http.https://git.corp.example/index.git.sslCAInfo"] == "/ca/cert.pem"
    assert notes and notes[0].startswith("GIT_SSL_CAINFO")
    sparse_only, _ = child_environment({"GIT_SSL_CAINFO": "/x.pem"}, config(c="sparse+https://a.example/i/"), SETTINGS)
    assert sparse_only["GIT_SSL_CAINFO"] == "/x.pem"  # no git index: nothing to change


def test_a_variable_that_is_not_utf_8_reaches_cmd_unchanged() -> None:
    ci = parse_config(CI, Path("/cfg/config.toml"))
    env, _ = child_environment({"VOUCH_CLIENT_SECRET": SECRET, "LEGACY": "caf\udce9"}, ci, SETTINGS)
    assert env["LEGACY"] == "caf\udce9" and SECRET not in env.values()
