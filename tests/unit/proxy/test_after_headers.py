"""Header fields after the body (HTTP/2 trailers) never pass the proxy on a registry origin:
hygiene checks header fields before the token goes on, and mitmproxy forwards a request's
trailers only after the `request` hook."""

from __future__ import annotations

from mitmproxy import flow as mitmflow
from mitmproxy import http
from mitmproxy.test import tutils

from cargo_vouch.proxy.after_headers import AfterHeaders
from tests.unit.proxy.conftest import SPARSE_CONFIG, registry_request

#: What hygiene refuses or drops in headers.
SMUGGLED = http.Headers([(b"X-HTTP-Method-Override", b"DELETE"), (b"Authorization", b"client-forged")])


async def test_a_read_whose_token_went_upstream_loses_its_trailers_and_is_cut_off(proxy, vouch_session, caplog):
    _, state, _, injector = proxy(SPARSE_CONFIG)
    flow = registry_request(path="/index/he/ll/hello")
    await injector.requestheaders(flow)
    assert flow.request.stream and flow.request.headers.get("Authorization")  # streamed, with the token
    flow.request.trailers = SMUGGLED.copy()
    AfterHeaders(state).request(flow)
    assert flow.request.trailers is None
    assert flow.error is not None and flow.error.msg == mitmflow.Error.KILLED_MESSAGE
    assert "trailers" in caplog.text and "client-forged" not in caplog.text


async def test_a_request_still_here_with_trailers_is_answered_400(proxy, vouch_session):
    """A request the injector did not route (outside every prefix) still shares the upstream
    connection: its body and trailers are still here when `request` runs."""
    _, state, _, injector = proxy(SPARSE_CONFIG)
    flow = registry_request(path="/admin/x")
    await injector.requestheaders(flow)
    assert not flow.request.stream
    flow.request.trailers = SMUGGLED.copy()
    AfterHeaders(state).request(flow)
    assert flow.request.trailers is None
    assert flow.response is not None and flow.response.status_code == 400
    assert b"trailers" in flow.response.content


async def test_trailers_to_a_host_that_is_not_a_registry_are_not_ours(proxy, vouch_session):
    _, state, _, _ = proxy(SPARSE_CONFIG)
    flow = registry_request(host="elsewhere.example")
    flow.request.trailers = SMUGGLED.copy()
    AfterHeaders(state).request(flow)
    assert flow.request.trailers == SMUGGLED and flow.response is None and flow.error is None


async def test_a_flow_answered_already_is_left_alone(proxy, vouch_session):
    _, state, _, _ = proxy(SPARSE_CONFIG)
    flow = registry_request(path="/index/he/ll/hello")
    flow.response = tutils.tresp(status_code=407)
    flow.request.trailers = SMUGGLED.copy()
    AfterHeaders(state).request(flow)
    assert flow.response.status_code == 407 and flow.error is None


async def test_a_registry_s_response_trailers_are_dropped(proxy, vouch_session):
    _, state, _, _ = proxy(SPARSE_CONFIG)
    flow = registry_request(path="/index/he/ll/hello")
    flow.response = tutils.tresp()
    flow.response.trailers = http.Headers([(b"Set-Cookie", b"session=for-the-token-holder")])
    AfterHeaders(state).response(flow)
    assert flow.response.trailers is None


async def test_trailers_sent_after_the_registry_answered_are_cut_off_too(proxy, vouch_session):
    """A streamed request has a response once the registry answers early; the client then
    sent its trailers, and they went upstream on the stream that carried the token."""
    _, state, _, injector = proxy(SPARSE_CONFIG)
    flow = registry_request(path="/index/he/ll/hello")
    await injector.requestheaders(flow)
    flow.response = tutils.tresp(status_code=200)  # the registry's early answer
    flow.request.trailers = SMUGGLED.copy()
    AfterHeaders(state).request(flow)
    assert flow.request.trailers is None
    assert flow.error is not None and flow.error.msg == mitmflow.Error.KILLED_MESSAGE


async def test_a_body_behind_an_http2_read_that_declared_none_is_never_forwarded(proxy, vouch_session):
    """Review 18: should the registry's next connection speak HTTP/1.1, mitmproxy writes
    such a body raw after the request head: a second request no check saw."""
    _, state, _, injector = proxy(SPARSE_CONFIG)
    flow = registry_request(path="/index/he/ll/hello")
    flow.request.http_version = "HTTP/2.0"
    await injector.requestheaders(flow)
    assert flow.request.headers.get("Authorization")  # the read itself is fine
    stream = flow.request.stream
    assert callable(stream) and stream(b"GET /smuggled HTTP/1.1\r\n\r\n") == b"" and stream(b"") == b""
    AfterHeaders(state).request(flow)
    assert flow.error is not None and flow.error.msg == mitmflow.Error.KILLED_MESSAGE


async def test_an_http2_read_without_a_body_goes_on(proxy, vouch_session):
    _, state, _, injector = proxy(SPARSE_CONFIG)
    flow = registry_request(path="/index/he/ll/hello")
    flow.request.http_version = "HTTP/2.0"
    await injector.requestheaders(flow)
    assert flow.request.stream(b"") == b""
    AfterHeaders(state).request(flow)
    assert flow.error is None and flow.response is None


async def test_a_read_with_both_a_body_and_trailers_loses_the_trailers_too(proxy, vouch_session):
    """The body check returned before the trailers were dropped: mitmproxy sends a streamed
    request's trailers after the `request` hook, killed or not."""
    _, state, _, injector = proxy(SPARSE_CONFIG)
    flow = registry_request(path="/index/he/ll/hello")
    flow.request.http_version = "HTTP/2.0"
    await injector.requestheaders(flow)
    flow.request.stream(b"smuggled")
    flow.request.trailers = SMUGGLED.copy()
    AfterHeaders(state).request(flow)
    assert flow.request.trailers is None
    assert flow.error is not None and flow.error.msg == mitmflow.Error.KILLED_MESSAGE
