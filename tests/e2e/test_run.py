"""`cargo vouch run -- CMD`: the CI path. No Cargo config points at the proxy here; the
build only gets through because `run` hands CMD the proxy in its environment."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from examples.demo.cratebuild import CrateSpec
from tests.e2e.conftest import LEGACY_CARGO, LEGACY_RUSTC, REPO, World, current_cargo, needs_legacy_cargo

pytestmark = pytest.mark.e2e

HELLO = CrateSpec("hello", "0.1.0")


def registry_config(world: World, index: str) -> None:
    world.write_config(f'[registries.corp]\nindex = "{index}"\n')


def run_env(world: World, cargo: str, rustc: str, project: Path) -> dict[str, str]:
    return {
        **world.env,
        "RUSTC": rustc,
        "CARGO": cargo,
        "CARGO_TERM_COLOR": "never",
        "CARGO_TARGET_DIR": str(world.root / "target"),  # outside the project: its files must not change
    }


def vouch_run(world: World, *cmd: str, cwd: Path | None = None, env: dict[str, str] | None = None,
              timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", world.cli_module, "run", "--", *cmd],
        cwd=cwd or REPO, env={**(env or world.env), "PYTHONPATH": str(REPO)},
        capture_output=True, text=True, timeout=timeout,
    )


def tree_digest(root: Path) -> dict[str, str]:
    """Every file of the project but Cargo.lock, which Cargo itself writes on a first build."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*")) if path.is_file() and path.name != "Cargo.lock"
    }


def plain_project(world: World, index: str, net_cli: bool = False) -> Path:
    """A project whose Cargo config names the registry and nothing about a proxy."""
    project = world.project("app", [HELLO], index, net_cli=net_cli)
    assert "proxy" not in (project / ".cargo" / "config.toml").read_text()
    return project


def assert_all_authenticated(world: World) -> None:
    seen = world.registry.requests
    assert seen and all(r.authenticated for r in seen), [(r.method, r.path, r.reason) for r in seen]
    assert any("/dl/hello/0.1.0/download" in r.path for r in seen)


def test_current_cargo_builds_through_run_and_leaves_the_project_unchanged(world: World) -> None:
    toolchain = current_cargo()
    if toolchain is None:
        pytest.skip("no current Cargo on PATH")
    token = world.login()
    registry_config(world, world.registry.sparse_index_url)
    project = plain_project(world, world.registry.sparse_index_url)
    before = tree_digest(project)
    vouch_home = Path(world.env["CARGO_VOUCH_HOME"])

    result = vouch_run(world, toolchain[0], "run", "--quiet", cwd=project, env=run_env(world, *toolchain, project))

    assert result.returncode == 0, result.stderr
    assert "hello from hello 0.1.0" in result.stdout
    assert_all_authenticated(world)
    assert tree_digest(project) == before
    # Nothing written but the CA files (key, certificate, trust bundles, mitmproxy's DH parameters); no Cargo or git config anywhere.
    assert sorted(p.name for p in vouch_home.rglob("*") if p.is_file()) == sorted(
        ["mitmproxy-ca.pem", "mitmproxy-dhparam.pem", "cargo-vouch-ca-cert.pem", "upstream-ca-bundle.pem"]
    )
    assert not (world.home / ".gitconfig").exists()
    assert not (Path(world.env["CARGO_HOME"]) / "config.toml").exists()
    assert world.files_containing(token) == []
    assert token not in result.stdout + result.stderr


@needs_legacy_cargo()
@pytest.mark.parametrize("git_cli", [False, True], ids=["libgit2", "git-fetch-with-cli"])
def test_legacy_cargo_builds_from_git_index_through_run(world: World, git_cli: bool) -> None:
    world.login()
    registry_config(world, world.registry.git_index_url)
    project = plain_project(world, world.registry.git_index_url, net_cli=git_cli)
    before = tree_digest(project)

    env = run_env(world, str(LEGACY_CARGO), str(LEGACY_RUSTC), project)
    if git_cli:
        # CI images often set this; git lets it beat every sslCAInfo setting.
        env["GIT_SSL_CAINFO"] = str(world.pki.ca_cert)

    result = vouch_run(world, str(LEGACY_CARGO), "run", "--quiet", cwd=project, env=env)

    assert result.returncode == 0, result.stderr
    assert "hello from hello 0.1.0" in result.stdout
    assert_all_authenticated(world)
    assert any("git-upload-pack" in r.path for r in world.registry.requests)
    assert tree_digest(project) == before
    assert not (world.home / ".gitconfig").exists()


def test_logged_out_run_fails_and_cargo_says_vouch_login(world: World) -> None:
    toolchain = current_cargo()
    if toolchain is None:
        pytest.skip("no current Cargo on PATH")
    registry_config(world, world.registry.sparse_index_url)
    project = plain_project(world, world.registry.sparse_index_url)

    result = vouch_run(world, toolchain[0], "build", cwd=project, env=run_env(world, *toolchain, project))

    assert result.returncode != 0
    assert "vouch login" in result.stderr
    assert world.registry.requests == []


def test_run_exits_with_the_commands_status(world: World) -> None:
    registry_config(world, world.registry.sparse_index_url)
    result = vouch_run(world, "sh", "-c", "exit 7")
    assert result.returncode == 7, result.stderr


def test_child_sees_the_proxy_and_cainfo_but_the_parent_config_is_untouched(world: World) -> None:
    registry_config(world, world.registry.git_index_url)
    script = (
        'import os, json; print(json.dumps({k: v for k, v in os.environ.items() '
        'if k.startswith(("CARGO_HTTP", "GIT_CONFIG", "CARGO_REGISTRIES"))}))'
    )
    result = vouch_run(world, sys.executable, "-c", script)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["CARGO_HTTP_PROXY"].startswith("http://cargo-vouch:")
    assert seen["CARGO_HTTP_CAINFO"] == str(Path(world.env["CARGO_VOUCH_HOME"]) / "ca" / "cargo-vouch-ca-cert.pem")
    assert seen["CARGO_REGISTRIES_CORP_TOKEN"] == "cargo-vouch"
    keys = {seen[f"GIT_CONFIG_KEY_{n}"]: seen[f"GIT_CONFIG_VALUE_{n}"] for n in range(int(seen["GIT_CONFIG_COUNT"]))}
    assert keys[f"http.{world.registry.git_index_url}.proxy"] == seen["CARGO_HTTP_PROXY"]
    assert keys[f"http.{world.registry.git_index_url}.sslCAInfo"] == seen["CARGO_HTTP_CAINFO"]
    # The per-run credential is in no process's command line.
    password = seen["CARGO_HTTP_PROXY"].split(":")[2].split("@")[0]
    assert password not in result.stderr


def _proxy_from_child(world: World, tmp: Path, deaf: bool = False) -> tuple[subprocess.Popen[str], str, int]:
    """Starts `run` with a CMD that reports its pid and proxy URL, then waits to be killed
    (`deaf`: ignoring SIGINT, SIGTERM and SIGHUP)."""
    report = tmp / "child-report"
    script = (
        ("import signal; [signal.signal(s, signal.SIG_IGN) for s in (2, 15, 1)]; " if deaf else "")
        + f"import os, pathlib, time; pathlib.Path({str(report)!r} + '.tmp').write_text("
        "f\"{os.getpid()} {os.environ['CARGO_HTTP_PROXY']}\"); "
        f"os.replace({str(report)!r} + '.tmp', {str(report)!r}); time.sleep(600)"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "cargo_vouch.cli", "run", "--", sys.executable, "-c", script],
        cwd=REPO, env={**world.env, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not report.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"run did not start its command: {process.communicate()}")
        time.sleep(0.05)  # polling for the child's report file, not a synchronisation sleep
    pid, proxy_url = report.read_text().split(" ", 1)
    return process, proxy_url, int(pid)


def _connect(proxy_url: str, with_credential: bool) -> bytes:
    """A CONNECT as any local process could send it; returns the proxy's first answer bytes."""
    parts = urlsplit(proxy_url)
    request = "CONNECT localhost:1 HTTP/1.1\r\nHost: localhost:1\r\n"
    if with_credential:
        basic = base64.b64encode(f"{parts.username}:{parts.password}".encode()).decode()
        request += f"Proxy-Authorization: Basic {basic}\r\n"
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall((request + "\r\n").encode())
        return sock.recv(200)


def test_sigterm_stops_cmd_and_proxy_and_strangers_are_refused(world: World, tmp_path: Path) -> None:
    registry_config(world, world.registry.sparse_index_url)
    process, proxy_url, child_pid = _proxy_from_child(world, tmp_path)
    try:
        # Another local process without the run's credential: 407, no tunnel.
        assert _connect(proxy_url, with_credential=False).startswith(b"HTTP/1.1 407")
        assert not _connect(proxy_url, with_credential=True).startswith(b"HTTP/1.1 407")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert process.returncode == 128 + signal.SIGTERM
    # Nothing left: neither the command nor the proxy's port.
    with pytest.raises(ProcessLookupError):
        os.kill(child_pid, 0)
    port = int(proxy_url.rsplit(":", 1)[1])
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_a_command_that_ignores_sigterm_is_killed_after_the_grace_period(world: World, tmp_path: Path) -> None:
    registry_config(world, world.registry.sparse_index_url)
    process, _, child_pid = _proxy_from_child(world, tmp_path, deaf=True)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)  # SIGNAL_GRACE_SECONDS (10) later, not never
    assert process.returncode == 128 + signal.SIGKILL
    with pytest.raises(ProcessLookupError):
        os.kill(child_pid, 0)


def test_cmd_s_first_request_made_at_once_is_served(world: World) -> None:
    """The proxy serves from the moment CMD starts: a request CMD makes straight away is
    answered, with the registry's token."""
    world.login()
    registry_config(world, world.registry.sparse_index_url)
    url = world.registry.sparse_index_url.removeprefix("sparse+") + "config.json"
    result = vouch_run(world, "sh", "-c",
                       f'exec curl -sS --fail --proxy "$CARGO_HTTP_PROXY" --cacert "$CARGO_HTTP_CAINFO" {url}')
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["dl"] == world.registry.dl_url
    # Cargo's request and the proxy's own reading of config.json (to learn dl), both with the token.
    seen = world.registry.requests
    assert seen and all(r.authenticated for r in seen) and all(r.path == "/sparse/config.json" for r in seen)


def test_run_refuses_a_tls_key_log_before_cmd_starts(world: World, tmp_path: Path) -> None:
    registry_config(world, world.registry.sparse_index_url)
    marker = tmp_path / "cmd-ran"
    result = vouch_run(world, "touch", str(marker), env={**world.env, "SSLKEYLOGFILE": str(tmp_path / "keys")})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "cargo-vouch: run: SSLKEYLOGFILE is set: mitmproxy would write TLS session keys to a file, and with "
        "them every token could be read from a capture; unset it"
    ]
    assert not marker.exists() and not (tmp_path / "keys").exists()


def test_proxy_on_a_taken_port_is_one_line(world: World) -> None:
    registry_config(world, world.registry.sparse_index_url)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", world.cli_module, "proxy", "--listen", f"127.0.0.1:{port}"],
            cwd=REPO, env={**world.env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=60,
        )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"cargo-vouch: cannot listen on 127.0.0.1:{port}: Address already in use (held by you: is a proxy running "
        "already?); pick another address with --listen (or [proxy] listen in the config)"
    ]
