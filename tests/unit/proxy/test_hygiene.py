"""Requests that could mean two things never get a token, and never go upstream: each case
here is an attack from the security review, driven through the injector's own hook."""

from __future__ import annotations

import pytest
from mitmproxy.test import tutils

from tests.unit.proxy.conftest import SPARSE_CONFIG, registry_request

WRITES = SPARSE_CONFIG + "allow-publish = true\n"
API = {"api": "https://cargo.corp.example/web"}


async def sent(proxy, flow, config: str = SPARSE_CONFIG):  # type: ignore[no-untyped-def]
    """The injector's verdict on `flow`: (status it answered with or None, Authorization upstream)."""
    tctx, state, _, injector = proxy(config)
    state.router.registries[0].learn(API)
    await injector.requestheaders(flow)
    return (flow.response.status_code if flow.response else None), flow.request.headers.get("Authorization"), state


def raw_header(flow, name: bytes, value: bytes) -> None:  # type: ignore[no-untyped-def]
    flow.request.headers.fields = (*flow.request.headers.fields, (name, value))


@pytest.mark.parametrize(
    "name,value",
    [
        (b"X-A", b"a\rTransfer-Encoding: chunked"),  # a bare CR: some servers read a line break
        (b"X-A", b"a\r\nTransfer-Encoding: chunked"),  # what h2 4.1 lets through from HTTP/2
        (b"X-B", b"a\nb"),
        (b"X-C", b"a\x00b"),
        (b"X-D", b"a\x1bb"),
        (b"X-E", b"a\x7fb"),
        (b"X Y", b"z"),
        (b"X\rY", b"z"),
    ],
)
async def test_control_characters_in_any_header_are_refused_before_a_token(proxy, vouch_session, name, value):
    flow = registry_request()
    raw_header(flow, name, value)
    status, authorization, state = await sent(proxy, flow)
    assert status == 400 and authorization is None
    assert state.cache.provider_calls == 0
    assert b"cargo-vouch: refused: header" in flow.response.content


async def test_a_bare_cr_on_a_path_outside_the_prefixes_is_refused_too(proxy, vouch_session):
    """It would desynchronise the upstream connection that token-bearing requests share."""
    flow = registry_request(path="/admin/x")
    raw_header(flow, b"X-A", b"a\rTransfer-Encoding: chunked")
    status, authorization, _ = await sent(proxy, flow)
    assert status == 400


@pytest.mark.parametrize(
    "method,path",
    [
        ("DELETE", "/web/api/v1/crates/hello/0.1.0/yank#/api/v1/crates/other/9.9.9/yank"),
        ("PUT", "/web/api/v1/crates/hello/owners#/api/v1/crates/other/owners"),
        ("POST", "/web/api/v1/crates/hello/0.1.0/yank#/git-upload-pack"),
        ("POST", "/web/api/v1/crates/hello/0.1.0/yank%3F/git-upload-pack"),
        ("POST", "/web/api/v1/crates/hello/0.1.0/yank%23/git-upload-pack"),
        ("GET", "/index/..;/admin"),
        ("GET", "/index/%252e%252e/admin"),
        ("GET", "/index/..%20/admin"),
        ("GET", "/index/.../admin"),
        ("GET", "/index//3/f/foo"),
        ("GET", "/index/a%5cb"),
        ("GET", "/index/a%00b"),
        ("GET", "/index/a%0d%0aX-Evil:%201"),
        ("GET", "/index/%u002e%u002e/admin"),  # IIS decodes %u
        ("GET", "/%69ndex/3/f/foo"),  # needless escapes: under a prefix only once decoded
        ("DELETE", "/%77eb/api/v1/crates/hello/0.1.0/yank"),
        ("GET", "/index/3/f/f%6Fo"),
        ("GET /index/x HTTP/1.1\r\nHost: x\r\n\r\nDELETE", "/index/3/f/foo"),  # an HTTP/2 :method
    ],
)
async def test_targets_a_server_may_read_differently_are_refused(proxy, vouch_session, method, path):
    status, authorization, state = await sent(proxy, registry_request(path=path, method=method), WRITES)
    assert status == 400 and authorization is None
    assert state.cache.provider_calls == 0


@pytest.mark.parametrize(
    "headers,authority,http_version",
    [
        ((("Host", "other.corp.example"),), "", "HTTP/1.1"),  # another vhost behind the same front end
        ((("Host", "cargo.corp.example:8443"),), "", "HTTP/1.1"),
        ((("Host", "cargo.corp.example"), ("Host", "other.corp.example")), "", "HTTP/1.1"),
        ((("Host", "cargo.corp.example"),), "other.corp.example", "HTTP/1.1"),  # absolute-form target
        ((), "other.corp.example", "HTTP/2.0"),  # HTTP/2 :authority
        ((), "", "HTTP/1.1"),  # no Host at all
        ((("Host", "[cargo.corp.example]"),), "", "HTTP/1.1"),  # brackets belong to IPv6 only
        ((("Host", "cargo.corp.example]"),), "", "HTTP/1.1"),
        ((("Host", "]cargo.corp.example[:443"),), "", "HTTP/1.1"),
        ((("Host", "cargo.corp.example:\u00b9"),), "", "HTTP/1.1"),  # '¹' passes str.isdigit, not int()
        ((("Host", "cargo.corp.example:\u00b2\u00b3"),), "", "HTTP/1.1"),
    ],
)
async def test_a_request_naming_another_authority_than_the_tunnel_is_421(proxy, vouch_session, headers, authority,
                                                                          http_version):
    flow = registry_request(host_header="", headers=headers)
    flow.request.authority = authority
    flow.request.http_version = http_version
    status, authorization, state = await sent(proxy, flow)
    assert status == 421 and authorization is None
    assert state.cache.provider_calls == 0


@pytest.mark.parametrize("host", ["cargo.corp.example", "CARGO.corp.example:443", "cargo.corp.example:443"])
async def test_the_tunnel_s_own_authority_in_any_spelling_is_fine(proxy, vouch_session, host):
    status, authorization, _ = await sent(proxy, registry_request(host_header=host))
    assert status is None and authorization == vouch_session


async def test_an_https_request_that_did_not_come_through_connect_is_421(proxy, vouch_session):
    flow = registry_request()
    flow.client_conn.timestamp_tls_setup = None  # a plain-text client asking the proxy to speak TLS for it
    status, authorization, _ = await sent(proxy, flow)
    assert status == 421 and authorization is None


@pytest.mark.parametrize("name", ["X_HTTP_METHOD_OVERRIDE", "X-Original-URL", "X-Rewrite-URL", "x-http-method",
                                  "X-Method-Override", "X_Original_Method"])
async def test_override_headers_never_reach_the_registry(proxy, vouch_session, name):
    flow = registry_request(headers=[(name, "/web/api/v1/crates/hello/0.1.0/yank"), ("Accept", "*/*")])
    status, authorization, _ = await sent(proxy, flow)
    assert status is None and authorization == vouch_session
    assert [k for k, _ in flow.request.headers.fields] == [b"Host", b"Accept", b"Authorization"]


async def test_a_flow_answered_by_proxyauth_is_left_alone(proxy, vouch_session):
    """mitmproxy calls every addon's hook even after proxyauth answered 407: no provider runs."""
    flow = registry_request()
    flow.response = tutils.tresp(status_code=407)
    status, authorization, state = await sent(proxy, flow)
    assert status == 407 and authorization is None
    assert state.cache.provider_calls == 0


async def test_a_failed_flow_is_left_alone(proxy, vouch_session):
    from mitmproxy import flow as mitm_flow

    request = registry_request()
    request.error = mitm_flow.Error("Received invalid header name")
    status, authorization, state = await sent(proxy, request)
    assert authorization is None and state.cache.provider_calls == 0


async def test_a_refusal_never_quotes_a_header_value(proxy, vouch_session, caplog):
    flow = registry_request()
    raw_header(flow, b"X-Secret", b"hunter2\rTransfer-Encoding: chunked")
    await sent(proxy, flow)
    assert b"hunter2" not in flow.response.content and "hunter2" not in caplog.text
    assert b"header 'X-Secret' holds a control character" in flow.response.content



@pytest.mark.parametrize("coding", ["gzip, chunked", "chunked, chunked", "identity", "compress"])
async def test_a_transfer_encoding_other_than_chunked_is_refused(proxy, vouch_session, coding):
    flow = registry_request(headers=[("Transfer-Encoding", coding)])
    status, authorization, _ = await sent(proxy, flow)
    assert status == 400 and authorization is None


@pytest.mark.parametrize(
    "headers",
    [
        [("Content-Length", "5"), ("Transfer-Encoding", "chunked")],  # each server picks one
        [("Content-Length", "5"), ("Content-Length", "40")],
        [("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "chunked")],
    ],
)
async def test_a_body_whose_length_is_given_twice_is_refused(proxy, vouch_session, headers):
    """Review 18: with validate_inbound_headers off (a ~/.mitmproxy/config.yaml line), such
    a request reached the registry with the token, and a server framing by Content-Length
    read a second request in its body."""
    flow = registry_request(method="PUT", headers=headers)
    status, authorization, _ = await sent(proxy, flow)
    assert status == 400 and authorization is None


async def test_chunked_on_http2_is_refused(proxy, vouch_session):
    flow = registry_request(headers=[("Transfer-Encoding", "chunked")])
    flow.request.http_version = "HTTP/2.0"
    status, authorization, _ = await sent(proxy, flow)
    assert status == 400 and authorization is None


async def test_the_client_s_cookies_never_ride_with_the_token_and_the_registry_s_session_stays_here(proxy, vouch_session):
    from mitmproxy import http

    tctx, state, _, injector = proxy(SPARSE_CONFIG)
    state.router.registries[0].learned = True
    flow = registry_request(headers=[("Cookie", "sid=from-the-build")])
    await injector.requestheaders(flow)
    assert "Cookie" not in flow.request.headers and flow.request.headers["Authorization"] == vouch_session
    flow.response = tutils.tresp(headers=http.Headers(((b"Set-Cookie", b"sid=for-the-token-holder"),)))
    injector.responseheaders(flow)
    assert "Set-Cookie" not in flow.response.headers
