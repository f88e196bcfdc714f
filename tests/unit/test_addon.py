"""The addon's hooks, driven with mitmproxy's own taddons/tflow helpers and a real
provider process (the Vouch test double)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mitmproxy import http
from mitmproxy.addons import proxyserver, tlsconfig
from mitmproxy.test import taddons, tflow, tutils

from addon.inject import REDACTED
from addon.vouch_addon import make_addons

SPARSE_INDEX = "sparse+https://cargo.corp.example/index/"
GIT_INDEX = "https://git.corp.example/cargo/index.git"


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cargo-vouch.toml"
    path.write_text(text)
    return path


@pytest.fixture
def proxy(isolated_home, tmp_path):
    """The addons loaded into a taddons context; call with the config text."""
    contexts = []

    def start(config_text: str):
        addons = make_addons()
        context = taddons.context(tlsconfig.TlsConfig(), proxyserver.Proxyserver(), *addons)
        tctx = context.__enter__()
        contexts.append(context)
        _, loader, scope, injector = addons
        tctx.configure(loader, vouch_config=str(write_config(tmp_path, config_text)))
        return tctx, loader.state, scope, injector

    yield start
    for context in contexts:
        context.__exit__(None, None, None)


def registry_request(host="cargo.corp.example", path="/index/3/f/foo", method="GET", port=443, scheme="https", headers=()):
    flow = tflow.tflow(
        req=tutils.treq(host=host, port=port, scheme=scheme.encode(), path=path.encode(), method=method.encode(),
                        headers=http.Headers([(k.encode(), v.encode()) for k, v in headers]))
    )
    flow.response = None
    return flow


SPARSE_CONFIG = f'[registries.corp]\nindex = "{SPARSE_INDEX}"\n'


async def test_registry_request_gets_the_provider_token_replacing_the_clients(proxy, vouch_session):
    tctx, state, _, injector = proxy(SPARSE_CONFIG)
    state.router.registries[0].learned = True
    flow = registry_request(headers=[("Authorization", "cargo-vouch-placeholder")])
    await injector.requestheaders(flow)
    assert flow.request.headers.get_all("Authorization") == [vouch_session]
    assert flow.request.stream  # bodies pass through, never buffered


async def test_token_is_redacted_once_the_request_went_upstream(proxy, vouch_session, caplog):
    caplog.set_level("INFO")
    tctx, state, _, injector = proxy(SPARSE_CONFIG)
    state.router.registries[0].learned = True
    flow = registry_request()
    await injector.requestheaders(flow)
    flow.response = tutils.tresp(status_code=200)
    injector.responseheaders(flow)
    assert flow.request.headers["Authorization"] == REDACTED
    injector.response(flow)
    assert vouch_session not in json.dumps(flow.get_state(), default=str)
    assert "corp GET /index/3/f/foo read sub=alice@example.com expires_in=2879" in caplog.text
    assert "-> 200" in caplog.text
    assert vouch_session not in caplog.text


@pytest.mark.parametrize(
    "host,path,scheme,port",
    [
        ("crates.io", "/index/3/f/foo", "https", 443),  # another host
        ("cargo.corp.example", "/admin/users", "https", 443),  # registry host, outside its prefixes
        ("cargo.corp.example", "/index/3/f/foo", "http", 80),  # plain HTTP
    ],
)
async def test_other_requests_are_untouched(proxy, vouch_session, host, path, scheme, port):
    tctx, state, _, injector = proxy(SPARSE_CONFIG)
    state.router.registries[0].learned = True
    flow = registry_request(host=host, path=path, scheme=scheme, port=port, headers=[("Authorization", "theirs")])
    await injector.requestheaders(flow)
    assert flow.request.headers.get_all("Authorization") == ["theirs"]
    assert flow.response is None


async def test_many_requests_one_provider_call(proxy, vouch_session, isolated_home):
    tctx, state, _, injector = proxy(SPARSE_CONFIG)
    state.router.registries[0].learned = True
    for n in range(20):
        await injector.requestheaders(registry_request(path=f"/index/3/f/foo{n}"))
    assert state.cache.provider_calls == 1
    calls = [json.loads(line) for line in (isolated_home.parent / "vouch-calls.jsonl").read_text().splitlines()]
    assert sum(1 for c in calls if c.get("kind") == "get") == 1


async def test_logged_out_answers_with_vouch_login_and_sends_nothing(proxy, isolated_home):
    tctx, state, _, injector = proxy(SPARSE_CONFIG)
    flow = registry_request(path="/index/config.json")
    await injector.requestheaders(flow)
    assert flow.response is not None and flow.response.status_code == 403
    text = flow.response.get_text()
    assert "registry 'corp'" in text and "vouch login" in text
    assert "Authorization" not in flow.request.headers


async def test_logged_out_git_index_gets_a_git_protocol_error(proxy, isolated_home):
    tctx, state, _, injector = proxy(f'[registries.corp]\nindex = "{GIT_INDEX}"\n')
    flow = registry_request(host="git.corp.example", path="/cargo/index.git/info/refs?service=git-upload-pack")
    await injector.requestheaders(flow)
    assert flow.response is not None
    assert flow.response.headers["Content-Type"] == "application/x-git-upload-pack-advertisement"
    body = flow.response.content
    assert b"ERR cargo-vouch: no token for registry 'corp'" in body and b"vouch login" in body


async def test_writes_refused_unless_allowed(proxy, vouch_session):
    tctx, state, _, injector = proxy(SPARSE_CONFIG)
    state.router.registries[0].learn({"api": "https://cargo.corp.example/web"})
    flow = registry_request(path="/web/api/v1/crates/foo/1.0.0/yank", method="DELETE")
    await injector.requestheaders(flow)
    assert flow.response is not None and flow.response.status_code == 403
    assert "allow-publish = true" in flow.response.get_text()
    assert "Authorization" not in flow.request.headers


async def test_allowed_yank_gets_token(proxy, vouch_session):
    tctx, state, _, injector = proxy(SPARSE_CONFIG + "allow-publish = true\n")
    state.router.registries[0].learn({"api": "https://cargo.corp.example/web"})
    flow = registry_request(path="/web/api/v1/crates/foo/1.0.0/yank", method="DELETE")
    await injector.requestheaders(flow)
    assert flow.response is None
    assert flow.request.headers["Authorization"] == vouch_session


async def test_sparse_config_json_is_learned_and_loses_auth_required(proxy, vouch_session):
    tctx, state, _, injector = proxy(SPARSE_CONFIG)
    flow = registry_request(path="/index/config.json", headers=[("If-None-Match", '"abc"')])
    await injector.requestheaders(flow)
    assert "If-None-Match" not in flow.request.headers  # so the proxy always sees the body
    upstream = {"dl": "https://cargo.corp.example/dl", "api": "https://cargo.corp.example/web", "auth-required": True}
    flow.response = tutils.tresp(status_code=200, content=json.dumps(upstream).encode())
    injector.responseheaders(flow)
    assert not flow.response.stream
    injector.response(flow)
    handed_to_cargo = json.loads(flow.response.content)
    assert "auth-required" not in handed_to_cargo
    assert handed_to_cargo["dl"] == upstream["dl"]
    download = registry_request(path="/dl/foo/1.0.0/download")
    await injector.requestheaders(download)
    assert download.request.headers["Authorization"] == vouch_session


async def test_session_token_refused_by_registry_is_dropped(proxy, isolated_home, tmp_path):
    script = tmp_path / "tok"
    script.write_text("#!/bin/sh\necho static-token\n")
    script.chmod(0o755)
    tctx, state, _, injector = proxy(SPARSE_CONFIG + f'credential-provider = ["cargo:token-from-stdout", "{script}"]\n')
    state.router.registries[0].learned = True
    flow = registry_request()
    await injector.requestheaders(flow)
    flow.response = tutils.tresp(status_code=401)
    injector.responseheaders(flow)
    await injector.requestheaders(registry_request())
    assert state.cache.provider_calls == 2


async def test_token_prefix(proxy, vouch_session):
    tctx, state, _, injector = proxy(SPARSE_CONFIG + 'token-prefix = "Bearer "\n')
    state.router.registries[0].learned = True
    flow = registry_request()
    await injector.requestheaders(flow)
    assert flow.request.headers["Authorization"] == f"Bearer {vouch_session}"


async def test_tls_to_other_hosts_is_tunnelled(proxy, isolated_home):
    from mitmproxy import connection, tls
    from mitmproxy.proxy import context

    tctx, state, scope, _ = proxy(SPARSE_CONFIG)

    def hello(host: str, sni: str | None) -> tls.ClientHelloData:
        client = connection.Client(peername=("127.0.0.1", 5000), sockname=("127.0.0.1", 9001))
        ctx = context.Context(client, tctx.options)
        ctx.server = connection.Server(address=(host, 443))
        data = tls.ClientHelloData(ctx, tls.ClientHello(tutils_client_hello(sni)))
        return data

    registry = hello("cargo.corp.example", "cargo.corp.example")
    await scope.tls_clienthello(registry)
    assert not registry.ignore_connection
    other = hello("crates.io", "crates.io")
    await scope.tls_clienthello(other)
    assert other.ignore_connection
    mismatched = hello("cargo.corp.example", "crates.io")
    await scope.tls_clienthello(mismatched)
    assert mismatched.ignore_connection


def tutils_client_hello(sni: str | None) -> bytes:
    """A real TLS ClientHello, produced by Python's ssl module."""
    import ssl

    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    sslobj = context.wrap_bio(incoming, outgoing, server_hostname=sni)
    try:
        sslobj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    record = outgoing.read()
    return record[9:]  # strip the record header (5) and handshake header (4)


async def test_dl_on_a_host_outside_the_ca_is_reported(proxy, vouch_session, caplog):
    tctx, state, _, injector = proxy(SPARSE_CONFIG)
    state.learned_from(state.router.registries[0], {"dl": "https://files.corp.example/crates"})
    assert "files.corp.example, which the CA does not cover" in caplog.text
    assert 'add "https://files.corp.example:443/crates/" to prefixes' in caplog.text


async def test_no_state_is_kept_for_finished_flows(proxy, isolated_home):
    """A long-running proxy must not grow with every request it refused or served."""
    tctx, state, _, injector = proxy(SPARSE_CONFIG)
    flow = registry_request(path="/index/config.json")
    await injector.requestheaders(flow)  # logged out: refused
    injector.responseheaders(flow)
    injector.response(flow)
    assert not injector._config_json and not injector._authenticated


@pytest.mark.parametrize("peer,refused", [("127.0.0.1", False), ("::1", False), ("::ffff:127.0.0.1", False),
                                          ("192.0.2.7", True), ("2001:db8::1", True)])
def test_only_loopback_clients_are_served(peer, refused):
    from mitmproxy import connection

    from addon.loopback import LoopbackClients

    client = connection.Client(peername=(peer, 50000), sockname=("127.0.0.1", 9001))
    LoopbackClients().client_connected(client)
    assert (client.error is not None) is refused


async def test_unexpected_error_answers_the_request_instead_of_forwarding_it(proxy, vouch_session):
    """mitmproxy forwards a flow whose hook raised: ours must fail closed instead."""
    tctx, state, _, injector = proxy(SPARSE_CONFIG)
    state.router.registries[0].learned = True
    state.providers.clear()  # e.g. a registry gone after a reload: KeyError inside the hook
    flow = registry_request(headers=[("Authorization", "client-static-token")])
    await injector.requestheaders(flow)
    assert flow.response is not None and flow.response.status_code == 403
    assert "internal error (KeyError)" in flow.response.get_text()
    assert "Authorization" not in flow.request.headers


@pytest.mark.parametrize("option", [{"proxy_debug": True}, {"ssl_insecure": True}, {"listen_host": "0.0.0.0"}])
def test_options_that_would_expose_tokens_stop_the_proxy(proxy, isolated_home, caplog, option):
    tctx, state, _, _ = proxy(SPARSE_CONFIG)
    loader = tctx.master.addons.get("configloader")
    tctx.configure(loader, **option)
    assert "is refused" in caplog.text or "not a loopback address" in caplog.text
    assert tctx.options.server is False  # nothing listens: mitmdump's error check exits


def test_sslkeylogfile_stops_the_proxy(proxy, isolated_home, caplog, monkeypatch):
    monkeypatch.setenv("SSLKEYLOGFILE", str(isolated_home / "keys"))
    tctx, state, _, _ = proxy(SPARSE_CONFIG)
    assert "SSLKEYLOGFILE is set" in caplog.text
    assert tctx.options.server is False


async def test_config_json_is_reported_once_not_on_every_cargo_run(proxy, vouch_session, caplog):
    caplog.set_level("INFO")
    tctx, state, _, _ = proxy(SPARSE_CONFIG)
    registry = state.router.registries[0]
    for _ in range(3):
        state.learned_from(registry, {"dl": "https://files.corp.example/crates"})
    assert caplog.text.count("which the CA does not cover") == 1
    assert caplog.text.count("dl=https://files.corp.example:443/crates/") == 1


async def test_unrecognised_changing_requests_are_refused_even_when_writes_are_allowed(proxy, vouch_session):
    tctx, state, _, injector = proxy(SPARSE_CONFIG + "allow-publish = true\n")
    state.router.registries[0].learn({"api": "https://cargo.corp.example/web"})
    flow = registry_request(path="/web/api/v1/crates/foo/1.0.0/yank", method="POST",
                            headers=[("X-HTTP-Method-Override", "DELETE")])
    await injector.requestheaders(flow)
    assert flow.response is not None and flow.response.status_code == 403
    assert "is not a request Cargo makes" in flow.response.get_text()
    assert "Authorization" not in flow.request.headers and "X-HTTP-Method-Override" not in flow.request.headers


async def test_method_override_headers_never_reach_the_registry(proxy, vouch_session):
    tctx, state, _, injector = proxy(SPARSE_CONFIG)
    state.router.registries[0].learned = True
    flow = registry_request(headers=[("x-http-method", "DELETE"), ("X-Method-Override", "PUT"), ("Accept", "*/*")])
    await injector.requestheaders(flow)
    assert flow.response is None and flow.request.headers["Authorization"]
    assert flow.request.headers["Accept"] == "*/*"
    assert "x-http-method" not in flow.request.headers and "X-Method-Override" not in flow.request.headers
