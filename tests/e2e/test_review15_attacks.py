"""Review 15: attacks on c50f58e (see /work/notes/review15.md). Each test fails while its
attack works."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import pytest

from tests.e2e.conftest import World
from tests.fixtures.h2_origin import H2Origin
from tests.fixtures.other_user import other_user
from tests.fixtures.paths import REPO

pytestmark = pytest.mark.e2e

#: What hygiene refuses or drops in headers, sent instead as trailers behind a read.
TRAILERS = [("x-http-method-override", "DELETE"), ("authorization", "client-forged"),
            ("x-original-url", "/api/v1/crates/hello/0.1.0/yank")]


def _read_with_trailers(world: World, origin: H2Origin, path: str) -> bytes | None:
    """A build script's HTTP/2 GET under the index prefix (so the proxy adds the token),
    whose stream ends with TRAILERS; returns the status the client saw, if any."""
    sock = socket.create_connection(("127.0.0.1", world.proxy_port), timeout=5)
    sock.sendall(b"CONNECT localhost:%d HTTP/1.1\r\nHost: localhost:%d\r\n\r\n" % (origin.port, origin.port))
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(4096)
    context = ssl.create_default_context(cafile=str(world.cainfo))
    context.set_alpn_protocols(["h2"])
    with context.wrap_socket(sock, server_hostname="localhost") as tls:
        assert tls.selected_alpn_protocol() == "h2"
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        stream = conn.get_next_available_stream_id()
        conn.send_headers(stream, [(":method", "GET"), (":scheme", "https"), (":authority", f"localhost:{origin.port}"),
                                   (":path", path)])
        conn.send_data(stream, b"")
        conn.send_headers(stream, TRAILERS, end_stream=True)
        tls.sendall(conn.data_to_send())
        status = None
        while data := tls.recv(65536):
            events = conn.receive_data(data)
            for event in events:
                if isinstance(event, h2.events.ResponseReceived):
                    status = dict(event.headers).get(b":status")
            tls.sendall(conn.data_to_send())
            if any(isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset, h2.events.ConnectionTerminated))
                   for e in events):
                break
        return status


def test_trailers_behind_a_read_never_reach_the_registry(world: World, tmp_path: Path) -> None:
    """hygiene checks a request's header fields before the token goes on; HTTP/2 lets the
    client send more header fields after the body, which mitmproxy forwards after the
    `request` hook: an override header, a second Authorization, a rewritten URL (and on
    mitmproxy 11, CR/LF) reached the registry trailing the token-bearing read."""
    world.login()
    with H2Origin(tmp_path / "h2-origin", world.pki) as origin:
        world.write_config(f'[registries.h2reg]\nindex = "{origin.sparse_index_url}"\n')
        proxy = world.start_proxy()
        proxy.wait_for("h2reg: dl=")
        _read_with_trailers(world, origin, "/index/he/ll/hello")
        proxy.wait_for("a request with trailers")
        proxy.stop()
    sent = [r for r in origin.requests if r.header(":path") == "/index/he/ll/hello"]
    assert all(r.trailers == [] for r in sent), [r.trailers for r in sent]
    assert "refused: a request with trailers" in proxy.log()
    assert "client-forged" not in proxy.log()


SQUAT = ("import socket, sys\n"
         "s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen()\n"
         "print('holding', flush=True)\n"
         "while True: s.accept()[0].close()\n")


def test_a_proxy_port_another_user_took_is_named_not_taken_for_the_proxy(world: World) -> None:
    """Any local user may bind the proxy's fixed port while the proxy is down: `proxy` then
    cannot start and said only "Address already in use", and `doctor` called the other
    user's listener the proxy ("ok proxy: ... accepts connections"), while Cargo, as setup
    configured it, sent that user every CONNECT."""
    user = other_user()
    world.write_config(f'[registries.corp]\nindex = "{world.registry.sparse_index_url}"\n')
    squatter = user.popen(["/usr/bin/python3", "-c", SQUAT, str(world.proxy_port)])
    try:
        assert squatter.stdout and squatter.stdout.readline().strip() == "holding"
        doctor = world.cargo_vouch("doctor", check=False)
        proxy = subprocess.run([sys.executable, "-m", world.cli_module, "proxy"], cwd=REPO, env=world.env,
                               capture_output=True, text=True, timeout=60)
    finally:
        squatter.kill()
        squatter.wait()
    line = next(line for line in doctor.stdout.splitlines() if "proxy:" in line)
    assert not line.startswith("ok") and f"held by another local user (uid {user.uid})" in line, doctor.stdout
    assert proxy.returncode != 0
    assert f"held by another local user, uid {user.uid}" in proxy.stderr, proxy.stderr
