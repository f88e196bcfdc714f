"""What the proxy does to requests that are not the registry's, and when a provider fails:
checked with a plain HTTPS client through the real mitmdump."""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from tests.e2e.conftest import BIN, World
from tests.fixtures.origin import TlsOrigin

pytestmark = pytest.mark.e2e


@dataclass
class Fetched:
    status: int
    body: bytes
    peer_cert: x509.Certificate


def fetch(proxy_port: int, host: str, port: int, path: str, cafiles: list[Path]) -> Fetched:
    """GET https://host:port/path through the proxy (CONNECT), trusting `cafiles`."""
    context = ssl.create_default_context(cafile=str(cafiles[0]))
    for extra in cafiles[1:]:
        context.load_verify_locations(cafile=str(extra))
    conn = http.client.HTTPSConnection("127.0.0.1", proxy_port, context=context, timeout=60)
    conn.set_tunnel(host, port)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        der = conn.sock.getpeercert(binary_form=True)
        return Fetched(response.status, body, x509.load_der_x509_certificate(der))
    finally:
        conn.close()


def cainfo(world: World) -> Path:
    return Path(world.cargo_vouch("ca", "path").stdout.strip())


def test_other_hosts_are_tunnelled_with_their_own_certificate(world: World, tmp_path: Path) -> None:
    world.login()
    world.write_config(f'[registries.corp]\nindex = "{world.registry.git_index_url}"\n')
    proxy = world.start_proxy()
    with TlsOrigin(tmp_path / "origin", world.pki) as origin:
        got = fetch(proxy.port, "127.0.0.1", origin.port, "/anything", [cainfo(world), world.pki.ca_cert])
    assert got.status == 200
    assert got.peer_cert == x509.load_der_x509_certificate(origin.cert_der)
    echoed = {k.lower(): v for k, v in json.loads(got.body)["headers"].items()}
    assert "authorization" not in echoed


def test_registry_host_outside_prefixes_gets_no_token_and_leaf_names_only_the_host(world: World) -> None:
    world.login()
    world.write_config(f'[registries.corp]\nindex = "{world.registry.git_index_url}"\n')
    proxy = world.start_proxy()

    got = fetch(proxy.port, "localhost", world.registry.port, "/private/admin", [cainfo(world)])

    assert got.status == 401  # the registry's own refusal: no token arrived
    [seen] = [r for r in world.registry.requests if r.path == "/private/admin"]
    assert seen.authorization is None
    san = got.peer_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [n.value for n in san] == ["localhost"]
    ca = x509.load_pem_x509_certificates(cainfo(world).read_bytes())[0]
    assert got.peer_cert.issuer == ca.subject
    constraints = ca.extensions.get_extension_for_class(x509.NameConstraints)
    assert constraints.critical
    assert [n.value for n in constraints.value.permitted_subtrees] == ["localhost"]


def test_provider_hang_crash_and_garbage_are_clear_errors_and_proxy_keeps_serving(world: World) -> None:
    world.login()
    origin = world.registry.origin
    world.write_config(
        f'[registries.corp]\nindex = "{world.registry.git_index_url}"\n\n'
        f'[registries.hangs]\nindex = "sparse+{origin}/hangs/"\n'
        f'credential-provider = ["{BIN / "provider-hang"}"]\nprovider-timeout = 5\n\n'
        f'[registries.crashes]\nindex = "sparse+{origin}/crashes/"\n'
        f'credential-provider = ["{BIN / "provider-crash"}"]\n\n'
        f'[registries.garbles]\nindex = "sparse+{origin}/garbles/"\n'
        f'credential-provider = ["{BIN / "provider-garbage"}"]\n'
    )
    proxy = world.start_proxy()
    ca = [cainfo(world)]
    hung: dict[str, object] = {}

    def ask_hanging() -> None:
        started = time.monotonic()
        hung["result"] = fetch(proxy.port, "localhost", world.registry.port, "/hangs/config.json", ca)
        hung["seconds"] = time.monotonic() - started

    waiter = threading.Thread(target=ask_hanging)
    waiter.start()
    served = fetch(proxy.port, "localhost", world.registry.port, "/git/index.git/info/refs?service=git-upload-pack", ca)
    assert served.status == 200 and waiter.is_alive()  # served while the other provider hangs
    crashed = fetch(proxy.port, "localhost", world.registry.port, "/crashes/config.json", ca)
    garbled = fetch(proxy.port, "localhost", world.registry.port, "/garbles/config.json", ca)
    waiter.join(timeout=30)

    result = hung["result"]
    assert isinstance(result, Fetched) and result.status == 403
    assert b"registry 'hangs'" in result.body and b"did not answer within 5 s" in result.body
    assert 4.5 < float(hung["seconds"]) < 15  # type: ignore[arg-type]
    assert crashed.status == 403 and b"exited with status 3 before answering: boom" in crashed.body
    assert garbled.status == 403 and b"broke the protocol: answer is not JSON" in garbled.body
    assert not [r for r in world.registry.requests if not r.authenticated]  # nothing went up without a token
