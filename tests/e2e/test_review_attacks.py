"""A second, independent review's attacks, on a real proxy and the demo registry (the
contract: SPEC.md "Which requests get a token", "Who can use the proxy and read its
secrets"). Each test failed while its attack worked, before the fix it names; the
`test_held_*` tests at the end are attacks that held from the start."""

from __future__ import annotations

import json
import secrets
import socket
import ssl
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from examples.demo import registry as demo_registry
from tests.e2e.conftest import World
from tests.e2e.test_attacks import other  # noqa: F401 - the other user's fixture
from tests.fixtures import raw_client
from tests.fixtures.paths import REPO

pytestmark = pytest.mark.e2e


def _exchange(world: World, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh tunnel to the registry: status, headers (lower-case names), body."""
    import http.client

    with raw_client.through_proxy(world.proxy_port, "localhost", world.registry.port, world.cainfo) as conn:
        conn.send(raw)
        response = http.client.HTTPResponse(raw_client._Once(conn._file))  # type: ignore[arg-type]
        response.begin()
        headers = {k.lower(): v for k, v in response.getheaders()}
        return response.status, headers, response.read()


def _sparse(world: World, extra: str = "") -> None:
    world.write_config(f'[registries.corp]\nindex = "{world.registry.sparse_index_url}"\n{extra}')


# --- 1. Host in brackets: the token goes to a request naming another authority ----------------


@pytest.mark.parametrize("host", [b"[localhost]:%d", b"localhost]", b"[[localhost]]", b"]localhost[:%d"])
def test_a_host_in_brackets_is_another_authority_and_gets_no_token(world: World, host: bytes) -> None:
    """hygiene._same_origin strips '[' and ']' from both ends of any name, so `Host: [localhost]`
    (which a front end routes to its default virtual host, not to `localhost`) passes as the
    tunnel's own origin and the request leaves with the token."""
    world.login()
    _sparse(world)
    world.start_learned_proxy()
    port = world.registry.port
    value = host.replace(b"%d", b"%d" % port)
    status, _, body = _exchange(world, b"GET /sparse/he/ll/hello HTTP/1.1\r\nHost: " + value + b"\r\n\r\n")
    seen = [(r.headers.get("Host"), r.authenticated) for r in world.registry.requests]
    assert status == 421, (status, body, seen)  # today: 200, and the registry saw the token under that Host
    assert world.registry.requests == []


# --- 2. run: the CI secret is in the environment of run's own parent --------------------------


def test_the_build_under_run_cannot_read_the_ci_secret_from_run_s_parent(other) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """`run` hides the client secret from CMD's environment and makes itself undumpable, but
    the secret reached `run` through the environment of whatever started it (the CI job's
    shell), a process of the same user that is dumpable: CMD reads /proc/<grandparent>/environ."""
    user, venv, home, env = other
    secrets_ = {"VOUCH_CLIENT_SECRET": "ci-client-secret-5d1e", "CARGO_REGISTRIES_TEAM_TOKEN": "real-team-token-91ab"}
    build_script = (
        'gp=$(cut -d" " -f4 /proc/$PPID/stat); echo "grandparent $gp"; '
        'tr "\\000" "\\n" < /proc/$gp/environ'
    )
    # How a CI job runs it: a shell step (of the same user) with the secret in its environment.
    run = f"{venv / 'bin' / 'cargo-vouch'} run -- /bin/sh -c '{build_script}'"
    step = f"{run}; echo step-done"
    result = user.run(["/bin/sh", "-c", step], env={**env, **secrets_}, cwd=home)
    assert "step-done" in result.stdout, result.stderr
    for secret in secrets_.values():
        assert secret not in result.stdout, f"{secret} read by the build from run's parent"
    # run saw it and did not start the build; with exec no process of the user's holds it.
    assert "the value of CARGO_REGISTRIES_TEAM_TOKEN and VOUCH_CLIENT_SECRET is also in the environment of process" in result.stderr
    assert "start run with exec" in result.stderr
    assert "grandparent" not in result.stdout  # the build never ran

    execed = user.run(["/bin/sh", "-c", f"exec {run}"], env={**env, **secrets_}, cwd=home)
    assert "grandparent" in execed.stdout, execed.stderr  # the build ran...
    for secret in secrets_.values():
        assert secret not in execed.stdout + execed.stderr  # ...and found the secret nowhere


# --- 3. a session cookie from an authenticated answer reaches the build ------------------------


@pytest.fixture
def cookie_registry(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The demo registry made to behave like repository managers that open a session on an
    authenticated API call (Set-Cookie) and honour the cookie afterwards (Nexus-style)."""
    sessions: dict[str, str] = {}
    handler = demo_registry._RegistryHandler
    original_dispatch, original_send = handler._dispatch, handler._send

    def dispatch(self):  # type: ignore[no-untyped-def]
        cookie = self.headers.get("Cookie") or ""
        sid = cookie.partition("sid=")[2].split(";")[0]
        if sid in sessions and not self.headers.get("Authorization"):
            self.headers["Authorization"] = sessions[sid]
        self._came_with = self.headers.get("Authorization")
        original_dispatch(self)

    def send(self, status, body, content_type, headers=None):  # type: ignore[no-untyped-def]
        headers = dict(headers or {})
        if self._rec is not None and self._rec.authenticated and self._came_with:
            sid = secrets.token_hex(8)
            sessions[sid] = self._came_with
            headers["Set-Cookie"] = f"sid={sid}; Path=/; Secure; HttpOnly"
        original_send(self, status, body, content_type, headers)

    for name in ("do_GET", "do_HEAD", "do_POST", "do_PUT", "do_DELETE", "do_PATCH", "do_OPTIONS"):
        monkeypatch.setattr(handler, name, dispatch)
    monkeypatch.setattr(handler, "_send", send)
    return sessions


def test_a_session_cookie_from_an_authenticated_answer_never_reaches_the_build(
    world: World, cookie_registry: dict[str, str]
) -> None:
    """The proxy strips the client's Authorization, but passes the registry's Set-Cookie on a
    token-bearing answer back to the client and the client's Cookie on to the registry. With a
    registry that opens sessions, the build holds a registry credential, and requests the proxy
    does not route (here the API path with one letter percent-encoded) carry it past
    allow-publish = false: a yank."""
    world.login()
    _sparse(world)  # allow-publish = false
    world.start_proxy()
    port = world.registry.port
    status, headers, _ = _exchange(world, b"GET /sparse/he/ll/hello HTTP/1.1\r\nHost: localhost:%d\r\n\r\n" % port)
    assert status == 200
    cookie = headers.get("set-cookie", "")
    yank = b"DELETE /%%77eb/api/v1/crates/hello/0.1.0/yank HTTP/1.1\r\nHost: localhost:%d\r\n" % port
    if cookie:
        yank += b"Cookie: " + cookie.split(";")[0].encode() + b"\r\n"
    _exchange(world, yank + b"Content-Length: 0\r\n\r\n")
    yanked = world.registry.index_entries("hello")[0]["yanked"]
    assert not cookie and not yanked, f"Set-Cookie reached the build: {cookie!r}; yanked through it: {yanked}"


# --- 4. a learned dl/api may take over part of another registry's index -----------------------


def test_a_learned_dl_inside_another_registry_s_index_does_not_take_its_requests(world: World) -> None:
    """Only 'the learned prefix covers the other index's root' is refused. corp's config.json
    can name a directory *inside* team's index (same origin): team's index requests then
    leave with corp's token instead of team's."""
    world.login()
    reg = world.registry
    port = reg.port
    reg.set_sparse_config_body(json.dumps({"dl": f"https://localhost:{port}/git/index.git/info/"}).encode())
    world.env["CARGO_REGISTRIES_TEAM_TOKEN"] = "team-own-token"
    world.write_config(
        f'[registries.corp]\nindex = "{reg.sparse_index_url}"\n'
        f'[registries.team]\nindex = "{reg.git_index_url}"\ncredential-provider = "cargo:token"\n'
    )
    world.start_learned_proxy()
    _exchange(world, b"GET /git/index.git/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: localhost:%d\r\n\r\n" % port)
    seen = [(r.path, r.authorization) for r in reg.requests if r.path.startswith("/git/")]
    assert seen and all(auth == "team-own-token" for _, auth in seen), seen  # today: corp's JWT


# --- 5. a learned prefix '/;/' covers the whole origin on servers that drop ;params ------------


def test_a_learned_dl_of_an_empty_segment_with_params_is_not_a_root_prefix(world: World) -> None:
    """learned_prefix refuses '/' ("would cover every path of its host") but adopts '/;/',
    which Tomcat, Jetty and Spring read as '/' (path parameters dropped): every path of the
    origin is then one request away from the token (here `/;/anything`, forwarded with it)."""
    world.login()
    reg = world.registry
    port = reg.port
    reg.set_sparse_config_body(json.dumps({"dl": f"https://localhost:{port}/;/", "api": f"https://localhost:{port}/web"}).encode())
    _sparse(world)
    world.start_learned_proxy()
    _exchange(world, b"GET /;/admin/anything HTTP/1.1\r\nHost: localhost:%d\r\n\r\n" % port)
    assert not any(r.authenticated for r in reg.requests), [(r.path, r.authenticated) for r in reg.requests]


# --- 6. HTTP/2 :method is never checked: request-line injection on an h2->h1 downgrade -------


def _h2(world: World, streams: list[list[tuple[bytes, bytes]]]) -> tuple[str | None, list[tuple[bytes | None, bytes]]]:
    import h2.config
    import h2.connection
    import h2.events

    port = world.registry.port
    sock = socket.create_connection(("127.0.0.1", world.proxy_port), timeout=5)
    sock.sendall(b"CONNECT localhost:%d HTTP/1.1\r\nHost: localhost:%d\r\n\r\n" % (port, port))
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(4096)
    context = ssl.create_default_context(cafile=str(world.cainfo))
    context.set_alpn_protocols(["h2", "http/1.1"])
    tls = context.wrap_socket(sock, server_hostname="localhost")
    if tls.selected_alpn_protocol() != "h2":
        return tls.selected_alpn_protocol(), []
    conn = h2.connection.H2Connection(h2.config.H2Configuration(
        client_side=True, header_encoding=None, validate_outbound_headers=False, normalize_outbound_headers=False))
    conn.initiate_connection()
    tls.sendall(conn.data_to_send())
    results = []
    for headers in streams:
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, headers, end_stream=True)
        tls.sendall(conn.data_to_send())
        status, body, done = None, b"", False
        tls.settimeout(3)
        while not done:
            try:
                data = tls.recv(65536)
            except (TimeoutError, ssl.SSLError):
                break
            if not data:
                break
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived) and event.stream_id == sid:
                    status = dict(event.headers).get(b":status")
                elif isinstance(event, h2.events.DataReceived) and event.stream_id == sid:
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, sid)
                elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset, h2.events.ConnectionTerminated)):
                    done = True
            tls.sendall(conn.data_to_send())
        results.append((status, body))
    tls.close()
    return "h2", results


def test_an_h2_method_holding_crlf_never_reaches_the_registry(world: World) -> None:
    """hygiene checks header names and values, the target and the authority, but not the
    method. On mitmproxy 11 (h2 4.1.0, which does not reject CR/LF in values) a client that
    speaks HTTP/2 to the proxy while the registry speaks HTTP/1.1 — `connection_strategy=lazy`,
    an ordinary mitmproxy option, gives exactly that against an HTTP/1-only registry — writes
    `:method` verbatim into the request line: the registry reads a second, smuggled request
    (a DELETE .../yank) that the proxy never classified. The method is checked now, and
    (review 17) lazy connections, which let h2 meet an HTTP/1.1 registry at all, are refused:
    a body sent with an h2 GET was written raw onto the HTTP/1.1 connection as well."""
    world.login()
    _sparse(world)
    with pytest.raises(AssertionError, match="mitmdump did not start"):
        world.start_proxy("--set", "connection_strategy=lazy")
    assert "connection_strategy=lazy is refused" in world.proxies[-1].log()
    assert world.registry.requests == []
    # The eager default offers the client HTTP/2 only where the registry speaks it.
    world.start_learned_proxy()
    auth = b"localhost:%d" % world.registry.port
    method = (b"GET /sparse/he/ll/hello HTTP/1.1\r\nHost: " + auth + b"\r\n\r\n"
              b"DELETE /web/api/v1/crates/hello/0.1.0/yank HTTP/1.1\r\nHost: " + auth + b"\r\nX-S: x")
    alpn, answers = _h2(world, [[(b":method", method), (b":scheme", b"https"), (b":authority", auth), (b":path", b"/elsewhere")]])
    assert alpn == "http/1.1" and answers == []
    assert world.registry.requests == []


# --- 7. the request method reaches the proxy's terminal raw -----------------------------------


def test_a_request_method_cannot_write_terminal_escapes_to_the_proxy_log(world: World) -> None:
    """The refusal line for a request Cargo never makes logs `flow.request.method` as given:
    ESC sequences (cursor up, erase line) rewrite what the user's terminal shows — a touch
    prompt, say. Paths and header names are made printable; the method is not."""
    world.login()
    _sparse(world)
    proxy = world.start_proxy()
    port = world.registry.port
    _exchange(world, b"\x1b[1A\x1b[2K\x1b]0;x\x07GET /sparse/he/ll/hello HTTP/1.1\r\nHost: localhost:%d\r\n\r\n" % port)
    proxy.stop()
    assert "\x1b" not in proxy.log(), [line for line in proxy.lines if "\x1b" in line]


# --- 8. a touch cannot tell the user's publish from a build script's ---------------------------


HOSTILE_PUBLISH = textwrap.dedent('''
    import base64, json, os, socket, ssl, struct, urllib.parse
    proxy = urllib.parse.urlsplit(os.environ["CARGO_HTTP_PROXY"])
    host, port = "localhost", int(os.environ["REGISTRY_PORT"])
    meta = json.dumps({"name": "newlib", "vers": "0.2.0", "deps": [], "features": {}}).encode()
    crate = b"not the crate the user built"
    body = struct.pack("<I", len(meta)) + meta + struct.pack("<I", len(crate)) + crate
    sock = socket.create_connection((proxy.hostname, proxy.port))
    cred = base64.b64encode(f"{proxy.username}:{proxy.password}".encode()).decode()
    sock.sendall(f"CONNECT {host}:{port} HTTP/1.1\\r\\nHost: {host}:{port}\\r\\nProxy-Authorization: Basic {cred}\\r\\n\\r\\n".encode())
    head = b""
    while b"\\r\\n\\r\\n" not in head:
        head += sock.recv(4096)
    tls = ssl.create_default_context(cafile=os.environ["CARGO_HTTP_CAINFO"]).wrap_socket(sock, server_hostname=host)
    tls.sendall(f"PUT /web/api/v1/crates/new HTTP/1.1\\r\\nHost: {host}:{port}\\r\\nContent-Length: {len(body)}\\r\\n\\r\\n".encode() + body)
    print(tls.recv(65536)[:200])
''')


def test_the_touch_prompt_for_a_publish_tells_apart_crates_of_the_same_version(world: World, tmp_path: Path) -> None:
    """touch = true binds the assertion to the checksum, but the prompt a human reads is only
    "publish NAME vVERSION to REGISTRY". A build script that runs while the user publishes
    (cargo publish builds the package first) sends its own crate under the same name and
    version: the prompt is the one the user is waiting for, the touch approves it, and the
    registry stores the build script's crate."""
    state = world.root / "soft-fido.json"
    world.cli_module = "tests.fixtures.soft_key_cli"
    world.env["SOFT_FIDO_STATE"] = str(state)
    world.env["PYTHONPATH"] = str(REPO)
    world.write_config(f'[registries.corp]\nindex = "{world.registry.git_index_url}"\nallow-publish = true\ntouch = true\ntouch-timeout = 5\n')
    assert world.cargo_vouch("enroll", check=False).returncode == 0
    world.login()
    script = tmp_path / "build_rs.py"
    script.write_text(HOSTILE_PUBLISH)
    result = subprocess.run(
        [sys.executable, "-m", world.cli_module, "run", "--", sys.executable, str(script)],
        cwd=REPO, env={**world.env, "REGISTRY_PORT": str(world.registry.port)}, capture_output=True, text=True, timeout=120,
    )
    prompts = [line for line in result.stderr.splitlines() if "touch your key" in line]
    published = [p.crate for p in world.registry.published]
    assert prompts, result.stderr
    # The user's own `cargo publish` of newlib 0.2.0 shows exactly this line (test_touch.py):
    indistinguishable = any(p.endswith("touch your key to publish newlib v0.2.0 to corp") for p in prompts)
    assert not (indistinguishable and published == [b"not the crate the user built"]), (prompts, published)


# --- attacks that held (these pass) ------------------------------------------------------------


def test_held_another_user_via_an_ipv4_mapped_ipv6_socket(world: World) -> None:
    from tests.fixtures.other_user import other_user

    user = other_user()
    world.login()
    _sparse(world)
    proxy = world.start_proxy()
    code = textwrap.dedent(f'''
        import socket
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(("::ffff:127.0.0.1", {world.proxy_port}))
        s.sendall(b"CONNECT localhost:{world.registry.port} HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
        try:
            print("got", s.recv(100))
        except OSError as e:
            print("refused", e)
    ''')
    attempt = user.run(["/usr/bin/python3", "-c", code])
    assert "200" not in attempt.stdout, attempt.stdout
    proxy.stop()
    assert f"belongs to uid {user.uid}" in proxy.log()


@pytest.mark.parametrize("raw", [
    b"GET /sparse/he/ll/hello HTTP/1.1\r\nHost: localhost.:%d\r\n\r\n",
    b"GET /sparse/he/ll/hello HTTP/1.0\r\n\r\n",
    b"GET /sparse/he/ll/hello HTTP/1.1\r\nHost: localhost:%d\r\n x\r\n\r\n",
    b"GET /sparse/he/ll/hello HTTP/1.1\r\nHost: localhost:%d\r\nhost: localhost:%d\r\n\r\n",
    b"GET https://u@localhost:%d/sparse/he/ll/hello HTTP/1.1\r\nHost: localhost:%d\r\n\r\n",
    b"GET /sparse/%%2e%%2e/web/api/v1/crates HTTP/1.1\r\nHost: localhost:%d\r\n\r\n",
    b"GET /sparse/..%%252f..%%252fweb HTTP/1.1\r\nHost: localhost:%d\r\n\r\n",
    b"GET /sparse/.. ;/x HTTP/1.1\r\nHost: localhost:%d\r\n\r\n",
    b"GET /sparse//he/ll/hello HTTP/1.1\r\nHost: localhost:%d\r\n\r\n",
    b"GET /sparse/he/ll/hello%%3f HTTP/1.1\r\nHost: localhost:%d\r\n\r\n",
    b"delete /web/api/v1/crates/hello/0.1.0/yank HTTP/1.1\r\nHost: localhost:%d\r\n\r\n",
    b"DELETE /web/api/v1/crates/hel%%6co/0.1.0/yank HTTP/1.1\r\nHost: localhost:%d\r\n\r\n",
    b"DELETE /web/api/v1/crates/hello;x/0.1.0/YANK HTTP/1.1\r\nHost: localhost:%d\r\n\r\n",
    b"GET /web/api/v1/crates/hello/0.1.0/yank HTTP/1.1\r\nHost: localhost:%d\r\nX_HTTP_METHOD_OVERRIDE: DELETE\r\n\r\n",
    b"TRACE /sparse/he/ll/hello HTTP/1.1\r\nHost: localhost:%d\r\n\r\n",
    b"CONNECT localhost:%d HTTP/1.1\r\nHost: localhost:%d\r\n\r\n",
])
def test_held_request_spellings(world: World, raw: bytes) -> None:
    world.login()
    _sparse(world)  # allow-publish = false
    world.start_learned_proxy()
    port = world.registry.port
    raw = raw.replace(b"%d", b"%d" % port).replace(b"%%", b"%")
    try:
        _exchange(world, raw)
    except Exception:  # noqa: BLE001 - mitmproxy may close the connection
        pass
    assert not world.registry.index_entries("hello")[0]["yanked"]
    for request in world.registry.requests:  # only plain reads, for the tunnel's own Host, no override
        assert request.method in ("GET", "HEAD"), request
        assert request.headers.get("Host") == f"localhost:{port}", request
        assert not any("override" in name.lower() for name in request.headers), request
