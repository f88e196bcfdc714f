"""Review 12: attacks on the code of commit 4c0e21a (same-origin redirect follow-ups, `setup`
reading config.json, Cookie/Set-Cookie and hygiene changes, IP-addressed registries without
SNI, `run`'s ancestor check, the write relay's own-uid check), each against a real
`mitmdump -s addon/vouch_addon.py` or `cargo-vouch` process, real TLS and the demo registry.

The tests before "attacks that held" FAIL while the attack works (see /work/notes/review12.md);
the `test_held_*` tests PASS (attacks that did not work)."""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import ssl
import subprocess
import textwrap
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from cryptography import x509

from examples.demo import registry as demo_registry
from examples.demo.servers import BackgroundServer, LocalHTTPServer, local_server
from examples.demo.tls import TestPki
from tests.e2e.conftest import World, roots_with
from tests.e2e.test_attacks import other  # noqa: F401 - the other user's fixture
from tests.e2e.test_review_attacks import _exchange, _sparse, cookie_registry  # noqa: F401 - fixture
from tests.fixtures import raw_client
from tests.fixtures.other_user import other_user

pytestmark = pytest.mark.e2e


class Recorder(BackgroundServer):
    """A host that is not the registry (the "evil" index a project names, or another
    tenant's backend): records every request with its headers, answers `body`."""

    __test__ = False
    _name = "recorder"

    def __init__(self, workdir: Path, pki: TestPki | None, body: bytes = b'{"dl": "https://127.0.0.1:1/x/"}') -> None:
        super().__init__()
        self.workdir = workdir
        self.pki = pki  # None: plain HTTP
        self.body = body
        self.seen: list[tuple[str, str, dict[str, str]]] = []

    def _bind(self) -> LocalHTTPServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        recorder = self
        tls = self.pki is not None

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                self.request.settimeout(20)
                if tls:
                    self.request.do_handshake()
                super().setup()

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

            def _serve(self) -> None:
                recorder.seen.append((self.command, self.path, dict(self.headers.items())))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(recorder.body)))
                self.end_headers()
                self.wfile.write(recorder.body)

            do_GET = do_POST = _serve

        cert = self.pki.issue("recorder", ["127.0.0.1"], self.workdir) if self.pki is not None else None
        return local_server(Handler, tls=cert)

    def authorizations(self) -> list[str]:
        return [headers["Authorization"] for _, _, headers in self.seen if "Authorization" in headers]


# =============================================================================================
# Findings (these FAIL today)
# =============================================================================================

# --- F1. setup sends the Vouch session token to an index only the project's Cargo config names --


def test_setup_never_sends_the_token_to_an_index_the_cargo_vouch_config_does_not_name(world: World, tmp_path: Path) -> None:
    """`setup --registry corp` in a cloned project whose `.cargo/config.toml` says corp lives at
    another host than the cargo-vouch config does. setup sees the mismatch (it warns "differs
    ... left as is") but `hosts_of` then builds a default-provider RegistryConfig for the
    project's index and fetches its config.json with the user's Vouch session JWT (valid at
    every Vouch registry, VOUCH.md) — even with --dry-run, which promises to write nothing."""
    token = world.login()
    world.write_config(f'[registries.corp]\nindex = "{world.registry.sparse_index_url}"\n')
    with Recorder(tmp_path / "evil", world.pki) as evil:
        project = world.project("cloned", [], f"sparse+https://127.0.0.1:{evil.port}/index/")
        result = world.cargo_vouch("setup", "--registry", "corp", "--manifest-dir", str(project), "--dry-run", check=False)
    assert "differs from Cargo's" in result.stderr + result.stdout, result.stderr
    leaked = [auth for auth in evil.authorizations() if token in auth]
    assert not leaked, f"the evil index received the Vouch JWT on {[(m, p) for m, p, _ in evil.seen]}"


def test_setup_never_sends_the_token_over_plain_http(world: World, tmp_path: Path) -> None:
    """A project naming `sparse+http://…` for the registry (not configured in cargo-vouch yet):
    plan_setup would only warn that cargo-vouch "only authenticates https registries" — but
    hosts_of runs first and fetches config.json over plain HTTP with `Authorization: <Vouch
    JWT>` (direct_opener keeps urllib's default HTTPHandler), then setup dies with a traceback
    (UrlPrefix.parse asserts https), even under --dry-run."""
    token = world.login()
    world.write_config("")  # corp not configured yet: setup is adding it
    with Recorder(tmp_path / "plain", None) as plain:
        project = world.project("cloned", [], f"sparse+http://127.0.0.1:{plain.port}/index/")
        result = world.cargo_vouch("setup", "--registry", "corp", "--manifest-dir", str(project), "--dry-run", check=False)
    leaked = [auth for auth in plain.authorizations() if token in auth]
    assert not leaked, f"the Vouch JWT went out in clear text on {[(m, p) for m, p, _ in plain.seen]}; setup: {result.stderr[-300:]}"
    assert "Traceback" not in result.stderr  # today also: AssertionError in UrlPrefix.parse, after the leak


# --- F2. run's ancestor check: the CI secret is still readable by the build --------------------

SCAN = textwrap.dedent(r'''
    # A build script: looks for the CI client secret where `run`'s check does not.
    import os, re, sys
    mode = sys.argv[1]
    pattern = re.compile(rb"ci-client-secret-[0-9a-f]{16}")

    def ancestors():
        pid = os.getppid()
        while pid > 1:
            yield pid
            try:
                pid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
            except OSError:
                return

    def environ(pid):
        try:
            return pattern.findall(open(f"/proc/{pid}/environ", "rb").read())
        except OSError:
            return []

    def memory(pid):  # same uid, dumpable, no Yama restriction: /proc/PID/mem is readable
        found = []
        try:
            maps = open(f"/proc/{pid}/maps").read().splitlines()
            with open(f"/proc/{pid}/mem", "rb", 0) as mem:
                for line in maps:
                    span, perms = line.split()[:2]
                    lo, hi = (int(x, 16) for x in span.split("-"))
                    if "r" not in perms or "[v" in line or hi - lo > 256 << 20:
                        continue
                    try:
                        mem.seek(lo)
                        found += pattern.findall(mem.read(hi - lo))
                    except (OSError, ValueError, OverflowError):
                        pass
        except OSError:
            pass
        return found

    if mode == "siblings":
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]
        hits = [h for p in pids for h in environ(p)]
    elif mode == "ancestors-environ":
        hits = [h for p in ancestors() for h in environ(p)]
    else:
        hits = [h for p in ancestors() for h in memory(p)]
    print("build found:", sorted({h.decode() for h in hits}))
''')


@pytest.mark.parametrize("shape", ["sibling-daemon", "renamed-in-parent"])
def test_the_build_under_run_cannot_read_the_ci_secret_where_run_s_check_does_not_look(other, shape: str) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """`run` now refuses when an *ancestor's* /proc/PID/environ holds `NAME=value` for a secret
    it reads, and README says that with `exec` "no process of yours holds it". The check
    compares exact NAME=value entries of ancestors' initial environments only:
    - sibling-daemon: a process of the job started earlier with the job's environment
      (sccache's server, a Gradle daemon, ssh-agent…) is no ancestor; run starts (with exec),
      the build greps /proc/*/environ;
    - renamed-in-parent: the CI step has it as CI_VOUCH_SECRET and exports
      VOUCH_CLIENT_SECRET="$CI_VOUCH_SECRET"; the parent's environ holds the value under
      another name;
    run now looks for the secret's value in every environment it can read."""
    user, venv, home, env = other
    secret = "ci-client-secret-" + secrets.token_hex(8)
    scan = home / "build_rs.py"
    scan.write_text(SCAN)
    os.chown(scan, user.uid, user.gid)
    cargo_vouch = venv / "bin" / "cargo-vouch"
    mode = {"sibling-daemon": "siblings", "renamed-in-parent": "ancestors-environ"}[shape]
    run = f"{cargo_vouch} run -- /usr/bin/python3 {scan} {mode}"

    if shape == "sibling-daemon":
        daemon = subprocess.Popen([*user.prefix, "/bin/cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                  env={**env, "VOUCH_CLIENT_SECRET": secret}, cwd=home)
        try:
            result = user.run(["/bin/sh", "-c", f"exec {run}"], env={**env, "VOUCH_CLIENT_SECRET": secret}, cwd=home)
        finally:
            assert daemon.stdin is not None
            daemon.stdin.close()
            daemon.wait(timeout=30)
    else:
        step = f'export VOUCH_CLIENT_SECRET="$CI_VOUCH_SECRET"; unset CI_VOUCH_SECRET; {run}; echo step-done'
        result = user.run(["/bin/sh", "-c", step], env={**env, "CI_VOUCH_SECRET": secret}, cwd=home)

    assert "build found:" in result.stdout or "run:" in result.stderr, (result.stdout, result.stderr[-2000:])
    assert secret not in result.stdout, f"{shape}: the build read the CI client secret: {result.stdout.strip()}"



@pytest.mark.skipif(Path("/proc/sys/kernel/yama/ptrace_scope").exists()
                    and Path("/proc/sys/kernel/yama/ptrace_scope").read_text().strip() != "0",
                    reason="Yama keeps a process from reading its ancestors' memory here")
def test_a_runner_holding_the_secret_in_memory_is_what_run_cannot_hide_and_it_says_so(other) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """Not defended, and said: the CI runner holds the secret in memory, not in its environ
    (as GitHub's Runner.Worker does), and starts the step's `exec cargo vouch run`. Without a
    Yama ptrace restriction the build can read the runner's /proc/PID/mem (same uid). No
    check of run's can see into another process's memory; run warns instead."""
    user, venv, home, env = other
    secret = "ci-client-secret-" + secrets.token_hex(8)
    scan = home / "build_rs.py"
    scan.write_text(SCAN)
    os.chown(scan, user.uid, user.gid)
    run = f"{venv / 'bin' / 'cargo-vouch'} run -- /usr/bin/python3 {scan} ancestors-memory"
    secret_file = home / "runner-secret"
    secret_file.write_text(secret)
    os.chown(secret_file, user.uid, user.gid)
    secret_file.chmod(0o600)
    runner = (f"import os, subprocess; s = open({str(secret_file)!r}).read(); "
              f"raise SystemExit(subprocess.call(['/bin/sh', '-c', {('exec ' + run)!r}], "
              "env={**os.environ, 'VOUCH_CLIENT_SECRET': s}))")
    result = user.run(["/usr/bin/python3", "-c", runner], env=env, cwd=home)
    assert "cargo-vouch: warning: the command can read the memory of this user's other processes" in result.stderr


# --- F3. a Host port in superscript digits crashes hygiene: the request goes out unchecked -----


@pytest.mark.parametrize("raw", [
    # another virtual host by its Host header
    b"GET /sparse/he/ll/hello HTTP/1.1\r\nHost: localhost:\xb2\r\n\r\n",
    # a write with allow-publish = false, an override header and the client's own cookie
    b"DELETE /web/api/v1/crates/hello/0.1.0/yank HTTP/1.1\r\nHost: localhost:\xb9\r\nCookie: sid=client\r\n"
    b"X-HTTP-Method-Override: PUT\r\nContent-Length: 0\r\n\r\n",
    # encoded dot segments
    b"GET /sparse/%2e%2e/web/api/v1/crates HTTP/1.1\r\nHost: localhost:\xb3\r\n\r\n",
], ids=["other-vhost", "yank-with-override-and-cookie", "dot-segments"])
def test_a_host_port_in_superscript_digits_is_refused_not_forwarded_unchecked(world: World, raw: bytes) -> None:
    """hygiene._same_origin does `port_text.isdigit()` then `int(port_text)`: '²', '³', '¹'
    (latin-1 bytes B2, B3, B9) are digits to isdigit() but not to int(), so the ValueError
    escapes `requestheaders` (hygiene runs outside the injector's fail-closed try). mitmproxy
    logs "Addon error" and forwards the request with none of the checks: another Host, a
    DELETE …/yank past allow-publish = false (no 403), X-HTTP-Method-Override and Cookie not
    dropped, `%2e%2e` not refused. (No token: injection comes after the check.)"""
    world.login()
    _sparse(world)  # allow-publish = false
    proxy = world.start_learned_proxy()
    status, _, body = _exchange(world, raw)
    seen = [(r.method, r.path, r.headers) for r in world.registry.requests if r.path != "/sparse/config.json"]
    proxy.stop()
    assert "Addon error" not in proxy.log(), [line for line in proxy.lines if "Error" in line][:3]
    assert status in (400, 421, 403), (status, body)
    assert seen == [], f"forwarded unchecked: {seen}"


# --- F4. routing on the once-decoded path puts the token on a wire path under no prefix -------


@pytest.mark.parametrize("target", [b"/%77eb/api/v1/crates?q=hello", b"/%73parse/he/ll/hello"], ids=["api", "index"])
def test_the_token_goes_only_with_a_wire_path_under_a_prefix(world: World, target: bytes) -> None:
    """Router.match now unquotes the path once before comparing it with the prefixes, but the
    request goes upstream with its raw path: `/%77eb/api/v1/crates` leaves with the token
    although its path on the wire lies under none of /sparse/, /dl/, /web/. A front end that
    routes on the raw path (HAProxy `path_beg /web/`, Envoy without path normalisation) sends
    it — token included — to whatever serves the rest of the origin."""
    world.login()
    _sparse(world)
    world.start_learned_proxy()
    _exchange(world, b"GET " + target + b" HTTP/1.1\r\nHost: localhost:%d\r\n\r\n" % world.registry.port)
    prefixes = ("/sparse/", "/dl/", "/web/")
    outside = [(r.path, r.authenticated) for r in world.registry.requests
               if r.authenticated and not r.path.split("?")[0].startswith(prefixes)]
    assert not outside, f"the registry got the token on a wire path under no prefix: {outside}"


# --- F5. a follow-up POST …/git-upload-pack is a read on a sparse registry ---------------------


def test_a_post_follow_up_outside_a_git_index_gets_no_token(world: World) -> None:
    """"POST counts as a read only in a git index" is checked in RegistryRoutes.match, but the
    Route built for a follow-up in VouchState.route calls classify_operation directly: after a
    same-origin redirect to …/git-upload-pack, a POST there (any body) leaves with the token,
    on a registry that has no git index at all."""
    world.login()
    _sparse(world)
    proxy = world.start_proxy()
    proxy.wait_for("corp: dl=")
    reg = world.registry
    reg.add_redirect("/sparse/moved", "/elsewhere/git-upload-pack")
    port = reg.port
    with raw_client.through_proxy(world.proxy_port, "localhost", port, world.cainfo) as conn:
        conn.send(b"GET /sparse/moved HTTP/1.1\r\nHost: localhost:%d\r\n\r\n" % port)
        assert conn.answer()[0] == 302
        conn.send(b"POST /elsewhere/git-upload-pack HTTP/1.1\r\nHost: localhost:%d\r\nContent-Length: 4\r\n\r\nBODY" % port)
        conn.answer()
    posts = [(r.path, r.authenticated) for r in reg.requests if r.method == "POST"]
    assert not any(authenticated for _, authenticated in posts), posts


# --- F6. setup writes a prefix that the cargo-vouch config cannot load --------------------------


@pytest.mark.parametrize("dl", ["https://[::1]:{port}/dl/", "https://bücher.example/dl/"], ids=["ipv6", "idn"])
def test_setup_never_writes_a_prefix_that_breaks_the_config(world: World, dl: str) -> None:
    """config.json's `dl` on an IPv6 literal or an IDN host: learned_prefix accepts it,
    index_hosts.prefix_url writes `https://::1:PORT/dl/` (brackets lost) or the Unicode host,
    and setup writes that into the cargo-vouch config — which then fails to load ("has no
    host" / "non-ASCII host name"): the proxy, `run` and `doctor` refuse to start until the
    user repairs the file. The registry's config.json decides (a hostile one bricks the setup)."""
    world.login()
    reg = world.registry
    reg.set_sparse_config_body(json.dumps({"dl": dl.format(port=reg.port), "api": f"https://localhost:{reg.port}/web"}).encode())
    world.write_config("")
    project = world.project("app", [], reg.sparse_index_url)
    world.cargo_vouch("setup", "--registry", "corp", "--manifest-dir", str(project), check=False)
    written = world.config_path.read_text()
    try:
        world.start_proxy()
    except AssertionError as exc:
        pytest.fail(f"the config setup wrote no longer loads:\n{written}\n{str(exc)[-600:]}")


# --- F7. an unparsable Location makes the proxy buffer an authenticated answer whole ------------


def test_a_redirect_with_an_unparsable_location_is_still_streamed(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """VouchState.redirected calls urljoin(request.url, location) outside its try: a registry
    answer `302 Location: https://[` raises ValueError ("Invalid IPv6 URL") in responseheaders,
    after which `flow.response.stream = True` is never set. mitmproxy then holds the whole body
    (here a declared 1 GiB) in memory before the client sees a byte: README's "anything else
    streams" no longer holds, and a hostile or broken registry grows the proxy at will."""
    release = threading.Event()
    handler = demo_registry._RegistryHandler
    original = handler._route

    def route(self, subject):  # type: ignore[no-untyped-def]
        if self.path != "/sparse/big":
            return original(self, subject)
        self.send_response(302)
        self.send_header("Location", "https://[")
        self.send_header("Content-Length", str(1 << 30))
        self.end_headers()
        self.wfile.write(b"x" * 65536)
        self.wfile.flush()
        release.wait(60)
        self.close_connection = True

    monkeypatch.setattr(handler, "_route", route)
    world.login()
    _sparse(world)
    proxy = world.start_proxy()
    port = world.registry.port
    try:
        with raw_client.through_proxy(world.proxy_port, "localhost", port, world.cainfo, timeout=10) as conn:
            conn.send(b"GET /sparse/big HTTP/1.1\r\nHost: localhost:%d\r\n\r\n" % port)
            try:
                first = conn.sock.recv(4096)
            except TimeoutError:
                first = b""
    finally:
        release.set()
    proxy.stop()
    assert "Addon error" not in proxy.log(), [line for line in proxy.lines if "Error" in line][:2]
    assert first.startswith(b"HTTP/1.1 302"), "nothing reached the client in 10 s: the answer is being buffered"


# =============================================================================================
# Attacks that held (these PASS)
# =============================================================================================


@pytest.mark.parametrize("location", [
    "https://127.0.0.1:{port}/moved/x",            # the same server by another name: another origin
    "//127.0.0.1:{port}/moved/x",
    "https://localhost.:{port}/moved/x",           # trailing dot
    "https://localhost:{port}@127.0.0.1:{port}/moved/x",  # userinfo
    "https://localhost/moved/x",                   # :443, not the registry's port
    "http://localhost:{port}/moved/x",             # another scheme
    "https:\\\\127.0.0.1:{port}/moved/x",          # backslashes
])
def test_held_a_redirect_to_another_origin_never_gets_the_token(world: World, location: str) -> None:
    """Location spellings that name (or could be read as) another origin: the follow-up is
    remembered only for (request.host, request.port), so whatever the client does next, a
    request on another origin is never routed; and on the same origin the client's request
    to that spelling's path gets no token either (only the exact remembered path does)."""
    world.login()
    _sparse(world)
    proxy = world.start_proxy()
    proxy.wait_for("corp: dl=")
    reg = world.registry
    port = reg.port
    reg.add_redirect("/sparse/go", location.format(port=port))
    status, headers, _ = _exchange(world, b"GET /sparse/go HTTP/1.1\r\nHost: localhost:%d\r\n\r\n" % port)
    assert status == 302
    reg.clear_requests()
    # The follow-up as a client resolving it to 127.0.0.1 would make it (tunnelled, the
    # registry's own certificate) and as one resolving it to localhost would.
    with raw_client.through_proxy(world.proxy_port, "127.0.0.1", port, world.pki.ca_cert) as conn:
        conn.send(b"GET /moved/x HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % port)
        conn.answer()
    _exchange(world, b"GET /moved/x HTTP/1.1\r\nHost: localhost:%d\r\n\r\n" % port)
    assert [(r.path, r.authenticated) for r in reg.requests if r.authenticated] == []


def test_held_a_follow_up_is_exact_single_use_and_bounded(world: World) -> None:
    """Only the exact remembered path and query gets the token, once; another spelling
    (query, case, an escape) gets none; 256 newer redirects evict an old one."""
    world.login()
    _sparse(world)
    proxy = world.start_proxy()
    proxy.wait_for("corp: dl=")
    reg = world.registry
    port = reg.port
    reg.add_redirect("/sparse/go", "/storage/hello/0.1.0.crate")
    with raw_client.through_proxy(world.proxy_port, "localhost", port, world.cainfo) as conn:
        def get(path: bytes) -> int:
            conn.send(b"GET " + path + b" HTTP/1.1\r\nHost: localhost:%d\r\n\r\n" % port)
            return conn.answer()[0]

        assert get(b"/sparse/go") == 302
        for other_spelling in (b"/storage/hello/0.1.0.crate?x", b"/STORAGE/hello/0.1.0.crate",
                               b"/storage/hello/0.1.0.crate/"):
            assert get(other_spelling) == 401
        assert get(b"/storage/hello/0.1.0%2Ecrate") == 400  # a needless escape: refused outright
        assert get(b"/storage/hello/0.1.0.crate") == 200  # the exact follow-up: the token, once
        assert get(b"/storage/hello/0.1.0.crate") == 401  # replayed: none
        # Bounded: the first of 257 remembered follow-ups is gone.
        for n in range(257):
            reg.add_redirect(f"/sparse/go{n}", f"/storage/hello/{n}.crate")
            assert get(b"/sparse/go%d" % n) == 302
        assert get(b"/storage/hello/0.crate") == 401  # evicted: no token
        assert get(b"/storage/hello/256.crate") == 404  # kept: the token, and the registry's 404


@pytest.mark.profile("cdn-redirect")
def test_held_the_cdn_s_presigned_url_never_sees_the_token_even_from_a_build_script(world: World) -> None:
    """The cdn-redirect profile, followed by the build's own raw client: the CDN's host is no
    registry origin, so its TLS is tunnelled and nothing of the registry's reaches it."""
    world.login()
    _sparse(world)
    proxy = world.start_proxy()
    proxy.wait_for("corp: dl=")
    reg = world.registry
    assert world.cdn is not None
    status, headers, _ = _exchange(world, b"GET /dl/hello/0.1.0/download HTTP/1.1\r\nHost: localhost:%d\r\n\r\n" % reg.port)
    assert status == 302
    location = headers["location"]
    assert location.startswith(f"https://127.0.0.1:{world.cdn.port}/")
    target = location.split(str(world.cdn.port), 1)[1].encode()
    with raw_client.through_proxy(world.proxy_port, "127.0.0.1", world.cdn.port, world.pki.ca_cert) as conn:
        conn.send(b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % world.cdn.port)
        assert conn.answer()[0] == 200
    assert world.cdn.requests and all("Authorization" not in r.headers for r in world.cdn.requests)


def test_held_set_cookie_never_reaches_the_build_through_a_redirect_and_its_follow_up(
    world: World, cookie_registry: dict[str, str]  # noqa: F811
) -> None:
    """The session-opening registry of review 10 on the same-origin-redirect path: neither the
    302 nor the follow-up's answer hands the build a Set-Cookie, and the build's own Cookie
    on the (routed) follow-up never reaches the registry."""
    world.login()
    _sparse(world)
    world.start_proxy()
    reg = world.registry
    port = reg.port
    reg.add_redirect("/sparse/go", "/storage/hello/0.1.0.crate")
    with raw_client.through_proxy(world.proxy_port, "localhost", port, world.cainfo) as conn:
        import http.client

        def exchange(raw: bytes) -> tuple[int, dict[str, str]]:
            conn.send(raw)
            response = http.client.HTTPResponse(raw_client._Once(conn._file))  # type: ignore[arg-type]
            response.begin()
            response.read()
            return response.status, {k.lower(): v for k, v in response.getheaders()}

        first = exchange(b"GET /sparse/go HTTP/1.1\r\nHost: localhost:%d\r\n\r\n" % port)
        second = exchange(b"GET /storage/hello/0.1.0.crate HTTP/1.1\r\nHost: localhost:%d\r\nCookie: sid=forged\r\n\r\n" % port)
    assert first[0] == 302 and second[0] == 200
    assert "set-cookie" not in first[1] and "set-cookie" not in second[1]
    assert cookie_registry  # the registry did open sessions...
    assert all("Cookie" not in r.headers for r in reg.requests)  # ...and never saw the build's cookie


@pytest.mark.parametrize("raw", [
    b"GET /sparse/he/ll/hello HTTP/1.1\r\nHost: localhost:%d\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    b"GET /sparse/he/ll/hello HTTP/1.1\r\nHost: localhost:%d\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
    b"GET /sparse/%%u002e%%u002e/web/api/v1/crates HTTP/1.1\r\nHost: localhost:%d\r\n\r\n",
    b"GET /sparse/%%U002e%%U002e/web/api/v1/crates HTTP/1.1\r\nHost: localhost:%d\r\n\r\n",
    b"GET /sparse/he/ll/hello HTTP/1.1\r\nHost: [localhost]\r\n\r\n",
    b"GET /sparse/he/ll/hello HTTP/1.1\r\nHost: localhost:0x%x\r\n\r\n",
])
def test_held_new_hygiene_rules(world: World, raw: bytes) -> None:
    world.login()
    _sparse(world)
    world.start_learned_proxy()
    port = world.registry.port
    raw = raw.replace(b"0x%x", b"0x%x" % port).replace(b"%d", b"%d" % port).replace(b"%%", b"%")
    try:
        status, _, _ = _exchange(world, raw)
    except Exception:  # noqa: BLE001 - mitmproxy may close the connection itself
        status = 400
    assert status in (400, 421)
    assert [r.path for r in world.registry.requests if r.path != "/sparse/config.json"] == []


def test_held_an_ip_addressed_registry_without_sni_gets_a_leaf_for_its_address_only(world: World) -> None:
    """CONNECT 127.0.0.1:PORT and a ClientHello without SNI (as clients do for an address):
    the leaf names the address and nothing else, the request gets the token; a ClientHello
    naming another host on the same tunnel is not opened (the origin's own certificate)."""
    world.login()
    reg = world.registry
    world.write_config(f'[registries.corp]\nindex = "sparse+https://127.0.0.1:{reg.port}/sparse/"\n')
    world.start_proxy()
    with raw_client.through_proxy(world.proxy_port, "127.0.0.1", reg.port, world.cainfo) as conn:
        leaf = x509.load_der_x509_certificate(conn.sock.getpeercert(binary_form=True))
        conn.send(b"GET /sparse/he/ll/hello HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % reg.port)
        assert conn.answer()[0] == 200
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert set(names.get_values_for_type(x509.DNSName)) <= {"127.0.0.1"}
    assert reg.requests[-1].authenticated
    # Same tunnel target, SNI "localhost": tunnelled to the registry's own certificate.
    sock = socket.create_connection(("127.0.0.1", world.proxy_port), timeout=10)
    sock.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (reg.port, reg.port))
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(4096)
    context = ssl.create_default_context(cafile=str(world.pki.ca_cert))
    with context.wrap_socket(sock, server_hostname="localhost") as tls:
        issuer = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).issuer
    dedicated = x509.load_pem_x509_certificate(world.cainfo.read_bytes())  # the bundle's first: our CA
    assert issuer != dedicated.subject and issuer == x509.load_pem_x509_certificate(world.pki.ca_cert.read_bytes()).subject


def _listening_ports(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and fields[9] in inodes:
            ports.add(int(fields[1].split(":")[1], 16))
    return ports


def test_held_the_write_relay_closes_another_user_s_connection(world: World) -> None:
    user = other_user()
    world.login()
    reg = world.registry
    world.write_config(f'[registries.corp]\nindex = "{reg.sparse_index_url}"\nallow-publish = true\n')
    proxy = world.start_proxy()
    status, _, body = _exchange(world, b"PUT /web/api/v1/crates/new HTTP/1.1\r\nHost: localhost:%d\r\n"
                                       b"Content-Length: 1\r\n\r\nx" % reg.port)
    assert status == 400 and b"publish format" in body  # answered by the relay, which now listens
    relay_ports = _listening_ports(proxy.process.pid) - {world.proxy_port}
    assert len(relay_ports) == 1, relay_ports
    relay = relay_ports.pop()
    code = textwrap.dedent(f'''
        import socket
        s = socket.create_connection(("127.0.0.1", {relay}), timeout=10)
        try:
            s.sendall(b"PUT /guess HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 0\\r\\n\\r\\n")
            print("answer", s.recv(200))
        except ConnectionResetError:
            print("answer b''")  # closed before reading: the same
    ''')
    theirs = user.run(["/usr/bin/python3", "-c", code])
    with socket.create_connection(("127.0.0.1", relay), timeout=10) as own:
        own.sendall(b"PUT /guess HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        ours = own.recv(200)
    assert "answer b''" in theirs.stdout, theirs.stdout + theirs.stderr
    assert ours.startswith(b"HTTP/1.1 404")  # the relay itself works for its own uid


@pytest.mark.parametrize("dl", [
    "https://127.0.0.1:{port}/",
    "https://127.0.0.1:{port}/;/",
    "https://127.0.0.1:{port}//x/",
    "https://127.0.0.1:{port}/x?crate={{crate}}",
    "https://u:p@127.0.0.1:{port}/x/",
    "https://127.0.0.1:{port}/x/%2e%2e/",
    "https://127.0.0.1:{port}{{crate}}/x/",
])
def test_held_setup_never_writes_a_root_or_disguised_root_prefix(world: World, dl: str) -> None:
    world.login()
    reg = world.registry
    reg.set_sparse_config_body(json.dumps({"dl": dl.format(port=reg.port)}).encode())
    world.write_config("")
    project = world.project("app", [], reg.sparse_index_url)
    world.cargo_vouch("setup", "--registry", "corp", "--manifest-dir", str(project), check=False)
    assert "prefixes" not in world.config_path.read_text()


def test_held_setup_reading_a_git_index_named_by_the_project_sends_no_token(world: World, tmp_path: Path) -> None:
    """The git-index case of F1: an index the project names that differs from the
    configured one is not read at all (and were it, git would go through the running
    proxy, which does not intercept a host it does not know)."""
    token = world.login()
    world.env["SSL_CERT_FILE"] = str(roots_with(world.pki.ca_cert, tmp_path / "roots.pem"))
    world.write_config(f'[registries.corp]\nindex = "{world.registry.git_index_url}"\n')
    world.start_proxy()
    with Recorder(tmp_path / "evil", world.pki, body=b"not git") as evil:
        project = world.project("cloned", [], f"https://127.0.0.1:{evil.port}/index.git")
        world.cargo_vouch("setup", "--registry", "corp", "--manifest-dir", str(project), "--dry-run", check=False)
    assert not [a for a in evil.authorizations() if token in a]
    assert all("Authorization" not in headers for _, _, headers in evil.seen)


def test_held_the_renamed_secret_check_still_catches_the_parent_holding_the_same_name(other) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """What run's new check does catch: the parent shell with VOUCH_CLIENT_SECRET itself."""
    user, venv, home, env = other
    secret = "ci-client-secret-" + secrets.token_hex(8)
    result = user.run(["/bin/sh", "-c", f"{venv / 'bin' / 'cargo-vouch'} run -- /bin/true; echo step-done"],
                      env={**env, "VOUCH_CLIENT_SECRET": secret}, cwd=home)
    assert "start run with exec" in result.stderr
    assert re.search(r"VOUCH_CLIENT_SECRET is also in the environment of process \d+", result.stderr)
