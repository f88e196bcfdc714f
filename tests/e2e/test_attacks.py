"""The security review's attacks, each against a real proxy and the demo registry: what a
build script with `CARGO_HTTP_PROXY` and a socket, or another user on the machine, tries.
Each held before the fix only where a comment says so; each holds now."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import World, free_port
from tests.fixtures import raw_client
from tests.fixtures.other_user import other_user, other_user_venv
from tests.fixtures.paths import REPO

pytestmark = pytest.mark.e2e

SMUGGLED = (
    b"0\r\n\r\n"
    b"DELETE /web/api/v1/crates/hello/0.1.0/yank HTTP/1.1\r\n"
    b"Host: localhost\r\n"
    b"X-Swallow: "
)


def carrier(port: int, authorization: bytes = b"") -> bytes:
    """A read whose bare CR makes a server that splits on it see `Transfer-Encoding: chunked`,
    so the rest of its body — a DELETE — waits for the next request to complete it."""
    return (
        b"GET /sparse/he/ll/hello HTTP/1.1\r\nHost: localhost:%d\r\n" % port + authorization
        + b"X-A: a\rTransfer-Encoding: chunked\r\nContent-Length: %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED
    )


def follower(port: int, authorization: bytes = b"") -> bytes:
    return b"GET /sparse/he/ll/hello HTTP/1.1\r\nHost: localhost:%d\r\n" % port + authorization + b"\r\n"


def yanked(world: World) -> bool:
    return bool(world.registry.index_entries("hello")[0]["yanked"])


def test_a_bare_cr_cannot_smuggle_a_yank_past_allow_publish(world: World) -> None:
    token = world.login()
    registry = world.registry
    auth = b"Authorization: %s\r\n" % token.encode()

    # The registry really is desynchronised by a bare CR when reached directly...
    with raw_client.direct("localhost", registry.port, world.pki.ca_cert) as conn:
        conn.send(carrier(registry.port, auth))
        assert conn.answer()[0] == 200
        conn.send(follower(registry.port, auth))
        conn.answer()
    assert yanked(world)  # the smuggled DELETE ran, with the follower's token
    registry.set_yanked("hello", "0.1.0", False)
    registry.clear_requests()

    # ...but not through the proxy, which would have put its token on both reads.
    world.write_config(f'[registries.corp]\nindex = "{registry.sparse_index_url}"\n')  # allow-publish = false
    proxy = world.start_proxy()
    with raw_client.through_proxy(world.proxy_port, "localhost", registry.port, world.cainfo) as conn:
        conn.send(carrier(registry.port))
        status, body = conn.answer()
        conn.send(follower(registry.port))
        after = conn.answer()
    assert status == 400 and b"header 'X-A' holds a control character" in body, body
    assert after[0] == 200  # the connection is not desynchronised: the next read is just a read
    assert not yanked(world)
    seen = registry.requests  # the follower (and the proxy's own config.json read); never the carrier
    assert seen and all(r.method == "GET" and "X-A" not in r.headers for r in seen)
    proxy.stop()
    assert "refused: header 'X-A' holds a control character" in proxy.log()


@pytest.mark.parametrize(
    "request_line,host",
    [
        (b"GET /sparse/he/ll/hello HTTP/1.1", b"other.localhost:%d"),  # another vhost by Host
        (b"GET https://other.localhost:%d/sparse/he/ll/hello HTTP/1.1", b"localhost:%d"),  # by absolute form
    ],
    ids=["host-header", "absolute-form"],
)
def test_a_request_in_the_registry_s_tunnel_cannot_name_another_vhost(world: World, request_line: bytes, host: bytes) -> None:
    world.login()
    registry = world.registry
    world.write_config(f'[registries.corp]\nindex = "{registry.sparse_index_url}"\n')
    world.start_learned_proxy()
    raw = (request_line.replace(b"%d", b"%d" % registry.port) + b"\r\nHost: " + host.replace(b"%d", b"%d" % registry.port)
           + b"\r\n\r\n")
    with raw_client.through_proxy(world.proxy_port, "localhost", registry.port, world.cainfo) as conn:
        conn.send(raw)
        status, body = conn.answer()
    assert status == 421 and b"but the connection is to localhost:" in body
    assert registry.requests == []  # the vhost on the same front end saw no token: nothing at all


def test_another_local_user_cannot_borrow_the_identity(world: World) -> None:
    user = other_user()
    world.login()
    registry = world.registry
    world.write_config(f'[registries.corp]\nindex = "{registry.sparse_index_url}"\n')
    proxy = world.start_learned_proxy()
    client = shutil.copy(REPO / "tests" / "fixtures" / "raw_client.py", user.home(Path("/var/tmp")) / "raw_client.py")

    attempt = user.run(["/usr/bin/python3", str(client), str(world.proxy_port), "localhost", str(registry.port),
                        "/sparse/he/ll/hello"])

    assert attempt.stdout.startswith("refused: "), attempt.stdout + attempt.stderr  # was: status 200 with the index
    assert registry.requests == []
    proxy.stop()
    assert f"the connecting socket belongs to uid {user.uid}; this proxy serves only uid 0" in proxy.log()


@pytest.fixture
def other(tmp_path: Path):  # type: ignore[no-untyped-def]
    """The other user, its venv with cargo-vouch, a home of its own and an environment for it."""
    user = other_user()
    venv = other_user_venv()
    home = user.home(Path("/var/tmp"))
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "CARGO_VOUCH_HOME": str(home / "cargo-vouch"),
        "CARGO_HOME": str(home / ".cargo"),
        "LANG": "C.UTF-8",
    }
    config = home / "cargo-vouch.toml"
    config.write_text(
        '[registries.corp]\nindex = "sparse+https://localhost:1/corp/"\n'
        '[registries.corp.client-credentials]\nissuer = "https://localhost:1"\nclient-id = "ci"\n'
        'client-secret-env = "VOUCH_CLIENT_SECRET"\n\n'
        '[registries.team]\nindex = "sparse+https://localhost:1/team/"\ncredential-provider = "cargo:token"\n'
    )
    env["CARGO_VOUCH_CONFIG"] = str(config)
    yield user, venv, home, env
    shutil.rmtree(home, ignore_errors=True)


def test_the_build_under_run_cannot_read_run_s_environment(other) -> None:  # type: ignore[no-untyped-def]
    user, venv, home, env = other
    secrets = {"VOUCH_CLIENT_SECRET": "ci-client-secret-5d1e", "CARGO_REGISTRIES_TEAM_TOKEN": "real-team-token-91ab"}

    result = user.run(
        [str(venv / "bin" / "cargo-vouch"), "run", "--", "/bin/sh", "-c",
         'cat /proc/$PPID/environ; echo "cat: $?"; env'],
        env={**env, **secrets}, cwd=home,
    )

    assert result.returncode == 0, result.stderr
    assert "cat: 1" in result.stdout and "Permission denied" in result.stderr  # was: the whole environment
    for secret in secrets.values():
        assert secret not in result.stdout + result.stderr
    assert "CARGO_REGISTRIES_TEAM_TOKEN=cargo-vouch" in result.stdout  # CMD's own: the placeholder


def test_the_proxy_process_is_not_dumpable_and_leaves_no_core(other) -> None:  # type: ignore[no-untyped-def]
    user, venv, home, env = other
    port = free_port()
    # Core files allowed where it starts, as on many desktops: the proxy must forbid its own.
    proxy = user.popen(["/bin/sh", "-c", 'ulimit -S -c unlimited && exec "$@"', "sh",
                        str(venv / "bin" / "cargo-vouch"), "proxy", "--listen", f"127.0.0.1:{port}"],
                       env={**env, "VOUCH_CLIENT_SECRET": "ci-client-secret-5d1e"}, cwd=home)
    try:
        assert proxy.stdout is not None
        started = False
        for line in proxy.stdout:  # ends at EOF if the proxy stops
            if "proxy listening at" in line:
                started = True
                break
        assert started and proxy.poll() is None
        peek = user.run(["/bin/cat", f"/proc/{proxy.pid}/environ"])
        limits = Path(f"/proc/{proxy.pid}/limits").read_text()
    finally:
        proxy.terminate()
        proxy.wait(timeout=30)
    assert peek.returncode != 0 and "Permission denied" in peek.stderr  # was: its own user could read it
    assert "ci-client-secret-5d1e" not in peek.stdout
    core = next(line for line in limits.splitlines() if line.startswith("Max core file size"))
    assert core.split()[4] == "0", core  # soft limit: no core file


def test_the_git_fetch_that_learns_config_json_holds_no_token(world: World, tmp_path: Path) -> None:
    token = world.login()
    log = tmp_path / "git-env.log"
    wrapper = tmp_path / "wrapped-git"
    wrapper.mkdir()
    real_git = shutil.which("git")
    (wrapper / "git").write_text(f'#!/bin/sh\n{{ env; echo "argv: $*"; }} >> {log}\nexec {real_git} "$@"\n')
    (wrapper / "git").chmod(0o755)
    world.env["PATH"] = f"{wrapper}:{world.env['PATH']}"
    world.env["CV_GIT_ENV_LOG"] = str(log)
    world.write_config(f'[registries.corp]\nindex = "{world.registry.git_index_url}"\n')

    proxy = world.start_proxy()
    deadline = time.monotonic() + 60
    while "corp: dl=" not in proxy.log() and time.monotonic() < deadline:
        proxy.reader.join(0.1)  # wait for the log line
    proxy.stop()

    assert f"corp: dl=https://localhost:{world.registry.port}/dl/" in proxy.log()  # learned, through the proxy
    seen = log.read_text()
    assert "argv: fetch" in seen
    assert token not in seen and "Authorization" not in seen  # was: GIT_CONFIG_VALUE_0=Authorization: <token>
    assert all(r.authenticated for r in world.registry.requests)


def test_a_command_that_cannot_start_ends_run_with_127(world: World) -> None:
    world.write_config(f'[registries.corp]\nindex = "{world.registry.sparse_index_url}"\n'
                       f'credential-provider = ["{REPO / "tests" / "fixtures" / "bin" / "provider-hang"}"]\n')
    result = subprocess.run(  # the provider hangs while the proxy learns: run used never to exit then
        [sys.executable, "-m", "cargo_vouch.cli", "run", "--", "/nonexistent/cmd"],
        cwd=REPO, env=world.env, capture_output=True, text=True, timeout=20,
    )
    assert result.returncode == 127
    assert "cannot start '/nonexistent/cmd'" in result.stderr


def test_config_json_endless_or_nested_is_never_handed_to_cargo(world: World) -> None:
    """The registry's config.json replaced by 2 MiB of '['; current Cargo then fails with the
    proxy's line, and the proxy stays small (see tests/unit/proxy/test_config_json.py)."""
    world.login()
    world.registry.set_sparse_config_body(b"[" * (2 << 20))
    world.write_config(f'[registries.corp]\nindex = "{world.registry.sparse_index_url}"\n')
    world.start_proxy()
    with raw_client.through_proxy(world.proxy_port, "localhost", world.registry.port, world.cainfo) as conn:
        conn.send(b"GET /sparse/config.json HTTP/1.1\r\nHost: localhost:%d\r\n\r\n" % world.registry.port)
        status, body = conn.answer()
    assert status == 502 and body == b"cargo-vouch: config.json of registry 'corp' is 2097152 bytes, over 1048576\n"
    json.dumps(body.decode())  # one line, plain text
