"""The injector's hooks, driven with mitmproxy's own taddons/tflow helpers and a real
provider process (the Vouch test double)."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from mitmproxy import http
from mitmproxy.test import tutils

from cargo_vouch.providers.token_cache import EXPIRY_MARGIN_SECONDS
from cargo_vouch.proxy.inject import REDACTED
from tests.unit.proxy.conftest import GIT_INDEX, SPARSE_CONFIG, registry_request


def through_stream(flow, *chunks: bytes) -> bytes:
    """What Cargo receives of a streamed answer: each chunk through the flow's stream
    callable, then the end (b""), as mitmproxy drives it."""
    stream = flow.response.stream
    assert callable(stream)
    return b"".join(b"".join(stream(chunk)) if chunk else stream(chunk) for chunk in (*chunks, b""))


async def test_registry_request_gets_the_provider_token_replacing_the_clients(proxy, vouch_session):
    tctx, state, _, injector = proxy(SPARSE_CONFIG)
    state.router.registries[0].learned = True
    flow = registry_request(headers=[("Authorization", "cargo-vouch-placeholder")])
    await injector.requestheaders(flow)
    assert flow.request.headers.get_all("Authorization") == [vouch_session]
    assert flow.request.stream  # bodies pass through, never buffered


async def answered_read(proxy, status: int, *, end: bool = True):  # type: ignore[no-untyped-def]
    """A read of the index that left with the token and got `status`, and its injector; the
    flow has gone through responseheaders, and with `end` through response as well."""
    _, state, _, injector = proxy(SPARSE_CONFIG)
    state.router.registries[0].learned = True
    flow = registry_request()
    await injector.requestheaders(flow)
    flow.response = tutils.tresp(status_code=status)
    injector.responseheaders(flow)
    if end:
        injector.response(flow)
    return flow, injector


async def test_token_is_redacted_once_the_request_went_upstream(proxy, vouch_session, caplog):
    caplog.set_level("INFO")
    flow, injector = await answered_read(proxy, 200, end=False)
    assert flow.request.headers["Authorization"] == REDACTED
    injector.response(flow)
    assert vouch_session not in json.dumps(flow.get_state(), default=str)
    line = re.search(r"cargo-vouch: corp GET /index/3/f/foo read sub=alice@example.com expires_in=(\d+)s -> 200 \d+ms",
                     caplog.text)
    assert line, caplog.text
    assert 8 * 3600 - EXPIRY_MARGIN_SECONDS < int(line[1]) <= 8 * 3600  # the session's own 8 hours
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
    assert flow.request.headers["Accept-Encoding"] == "identity"  # ...as the registry wrote it
    upstream = {"dl": "https://cargo.corp.example/dl", "api": "https://cargo.corp.example/web", "auth-required": True}
    body = json.dumps(upstream).encode()
    flow.response = tutils.tresp(status_code=200, content=b"", headers=http.Headers(((b"Content-Length", str(len(body)).encode()),)))
    injector.responseheaders(flow)
    handed_to_cargo = json.loads(through_stream(flow, body))
    injector.response(flow)
    assert "Content-Length" not in flow.response.headers and flow.response.headers["Transfer-Encoding"] == "chunked"
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


async def test_no_state_is_kept_for_finished_flows(proxy, isolated_home):
    """A long-running proxy must not grow with every request it refused or served."""
    tctx, state, _, injector = proxy(SPARSE_CONFIG)
    flow = registry_request(path="/index/config.json")
    await injector.requestheaders(flow)  # logged out: refused
    injector.responseheaders(flow)
    injector.response(flow)
    assert injector.tracked_flows == 0


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


@pytest.mark.parametrize(
    "location,follow_up,gets_token",
    [
        ("/storage/foo-1.0.0.crate?sig=1", ("cargo.corp.example", 443, "/storage/foo-1.0.0.crate?sig=1"), True),
        ("https://cargo.corp.example:443/storage/x", ("cargo.corp.example", 443, "/storage/x"), True),
        ("https://CARGO.corp.example/storage/x#frag", ("cargo.corp.example", 443, "/storage/x"), True),
        ("/storage/x", ("cargo.corp.example", 443, "/storage/y"), False),  # exactly that URL only
        ("https://cargo.corp.example:8443/storage/x", ("cargo.corp.example", 8443, "/storage/x"), False),
        ("http://cargo.corp.example/storage/x", ("cargo.corp.example", 443, "/storage/x"), False),
        ("https://cdn.example/bucket/x?X-Amz-Signature=1", ("cdn.example", 443, "/bucket/x?X-Amz-Signature=1"), False),
    ],
)
async def test_a_same_origin_redirect_s_follow_up_gets_the_token_as_curl_keeps_it(
    proxy, vouch_session, location, follow_up, gets_token
):
    # Port 8443 of the host is the registry's too (another path), so only the rule says no.
    tctx, state, _, injector = proxy(SPARSE_CONFIG + 'prefixes = ["https://cargo.corp.example:8443/other/"]\n')
    state.router.registries[0].learn({"dl": "https://cargo.corp.example/dl"})
    download = registry_request(path="/dl/foo/1.0.0/download")
    await injector.requestheaders(download)
    download.response = tutils.tresp(status_code=302, headers=http.Headers(((b"Location", location.encode()),)))
    injector.responseheaders(download)
    injector.response(download)

    host, port, path = follow_up
    again = registry_request(host=host, port=port, path=path)
    await injector.requestheaders(again)
    assert (again.request.headers.get("Authorization") == vouch_session) is gets_token
    if gets_token:  # once: a second request to the same URL is outside the prefixes again
        third = registry_request(host=host, port=port, path=path)
        await injector.requestheaders(third)
        assert "Authorization" not in third.request.headers


async def test_an_unauthenticated_answer_s_redirect_gives_no_token(proxy, vouch_session):
    """Only a registry answer to a request that carried the token counts."""
    tctx, state, _, injector = proxy(SPARSE_CONFIG)
    outside = registry_request(path="/public/readme")
    await injector.requestheaders(outside)
    outside.response = tutils.tresp(status_code=302, headers=http.Headers(((b"Location", b"/storage/x"),)))
    injector.responseheaders(outside)
    follow = registry_request(path="/storage/x")
    await injector.requestheaders(follow)
    assert "Authorization" not in follow.request.headers


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
async def test_only_a_get_or_head_rides_on_a_redirect(proxy, vouch_session, method):
    """curl follows Cargo's download redirects with GET: a POST (git's upload-pack on a
    registry without a git index) or a write never gets the token from one."""
    tctx, state, _, injector = proxy(SPARSE_CONFIG + "allow-publish = true\n")
    state.router.registries[0].learn({"dl": "https://cargo.corp.example/dl"})
    download = registry_request(path="/dl/foo/1.0.0/download")
    await injector.requestheaders(download)
    download.response = tutils.tresp(status_code=307, headers=http.Headers(((b"Location", b"/elsewhere/git-upload-pack"),)))
    injector.responseheaders(download)
    follow = registry_request(path="/elsewhere/git-upload-pack", method=method)
    await injector.requestheaders(follow)
    assert "Authorization" not in follow.request.headers


async def test_a_redirect_nobody_can_parse_is_still_streamed_and_gives_nothing(proxy, vouch_session):
    tctx, state, _, injector = proxy(SPARSE_CONFIG)
    state.router.registries[0].learned = True
    flow = registry_request()
    await injector.requestheaders(flow)
    flow.response = tutils.tresp(status_code=302, headers=http.Headers(((b"Location", b"https://["),)))
    injector.responseheaders(flow)
    assert flow.response.stream is True and flow.error is None
    assert len(state.follow_ups) == 0


async def test_an_error_in_the_checks_answers_the_request_instead_of_forwarding_it(proxy, vouch_session, monkeypatch):
    """Whatever fails before routing (the hygiene checks, routing), mitmproxy would forward
    the request as the client sent it: it is answered instead."""
    from cargo_vouch.proxy import hygiene

    def broken(*args: object) -> None:
        raise ValueError("a check that crashed")

    monkeypatch.setattr(hygiene, "check", broken)
    tctx, state, _, injector = proxy(SPARSE_CONFIG)
    flow = registry_request(headers=[("Cookie", "sid=client")])
    await injector.requestheaders(flow)
    assert flow.response is not None and flow.response.status_code == 500
    assert "internal error (ValueError)" in flow.response.get_text()
    assert state.cache.provider_calls == 0


async def test_an_error_on_the_registry_s_answer_closes_the_connection(proxy, vouch_session, monkeypatch):
    tctx, state, _, injector = proxy(SPARSE_CONFIG)
    state.router.registries[0].learned = True
    flow = registry_request()
    await injector.requestheaders(flow)
    flow.response = tutils.tresp(status_code=200, headers=http.Headers(((b"Set-Cookie", b"sid=1"),)))

    def broken(*args: object) -> None:
        raise RuntimeError("crashed")

    monkeypatch.setattr(state, "redirected", broken)
    injector.responseheaders(flow)
    assert flow.error is not None  # killed: nothing of the answer reaches the client
    assert flow.response.stream is True  # and nothing of it was held whole meanwhile


async def test_the_token_s_subject_reaches_the_log_only_as_printable_text(proxy, isolated_home, issuer, monkeypatch,
                                                                          caplog):
    """`sub` is the issuer's, read from the token unverified: it goes into the one line per
    request as paths and methods do, with no escape sequence for the user's terminal."""
    caplog.set_level("INFO")
    monkeypatch.setenv("VOUCH_TEST_ISSUER", issuer.url)
    subprocess.run(["vouch", "login", "--sub", "\x1b]0;pwned\x07alice\x1b[2K"], check=True, capture_output=True)
    await answered_read(proxy, 200)
    assert "sub=?]0;pwned?alice?[2K " in caplog.text, caplog.text
    assert "\x1b" not in caplog.text


async def test_a_token_the_registry_refuses_is_named_once_with_what_to_check(proxy, vouch_session, caplog):
    """Current Cargo, given a 401 on config.json, says only that the registry needs a
    credential provider, which it has: the proxy's line says whose token was refused."""
    _, state, _, injector = proxy(SPARSE_CONFIG)
    state.router.registries[0].learned = True
    flows = [registry_request(), registry_request()]
    for flow in flows:  # two requests in flight with the same token
        await injector.requestheaders(flow)
    for flow in flows:  # both refused
        flow.response = tutils.tresp(status_code=401)
        injector.responseheaders(flow)
    lines = [r.getMessage() for r in caplog.records if "answered 401 to the token" in r.getMessage()]
    assert lines == [
        "cargo-vouch: corp: the registry answered 401 to the token from vouch credential cargo -- (GET /index/3/f/foo); "
        "check that the provider's token is for this registry, and token-prefix (none) in the cargo-vouch config"
    ], lines
    assert vouch_session not in caplog.text
