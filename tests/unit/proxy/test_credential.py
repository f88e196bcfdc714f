"""`run`'s per-run proxy credential: only a client that was given it gets through, and the
credential itself never travels further than the proxy."""

from __future__ import annotations

import base64

import pytest
from mitmproxy.test import tflow

from cargo_vouch.proxy.credential import ProxyCredential, basic_credential


def basic(value: str) -> str:
    return "Basic " + base64.b64encode(value.encode()).decode()


def connect_flow(header: str | None):
    flow = tflow.tflow()
    flow.request.method = "CONNECT"
    flow.request.host, flow.request.port = "cargo.corp.example", 443
    if header is not None:
        flow.request.headers["Proxy-Authorization"] = header
    return flow


def test_a_connect_with_the_credential_opens_its_tunnel_and_the_credential_goes_no_further() -> None:
    gate = ProxyCredential("cargo-vouch", "s3cret")
    connect = connect_flow(basic("cargo-vouch:s3cret"))
    gate.http_connect(connect)
    assert connect.response is None
    assert "Proxy-Authorization" not in connect.request.headers
    # What the client then sends through its tunnel carries no credential of its own.
    inside = tflow.tflow()
    inside.client_conn = connect.client_conn
    gate.requestheaders(inside)
    assert inside.response is None


@pytest.mark.parametrize("header", [
    None,
    basic("cargo-vouch:wrong"),
    basic("someone:s3cret"),
    basic("cargo-vouch:s3cret:extra"),
    "Bearer " + base64.b64encode(b"cargo-vouch:s3cret").decode(),
    "Basic not-base64!!",
    "Basic",
])
def test_anything_else_gets_407_and_no_tunnel(header: str | None) -> None:
    gate = ProxyCredential("cargo-vouch", "s3cret")
    connect = connect_flow(header)
    gate.http_connect(connect)
    assert connect.response is not None and connect.response.status_code == 407
    assert connect.response.headers["Proxy-Authenticate"] == 'Basic realm="cargo-vouch"'
    # Its connection was not admitted: a request on it is refused too.
    later = tflow.tflow()
    later.client_conn = connect.client_conn
    gate.requestheaders(later)
    assert later.response is not None and later.response.status_code == 407


def test_a_plain_http_request_to_the_proxy_needs_the_credential_too() -> None:
    gate = ProxyCredential("cargo-vouch", "s3cret")
    refused = tflow.tflow()
    gate.requestheaders(refused)
    assert refused.response is not None and refused.response.status_code == 407
    admitted = tflow.tflow()
    admitted.request.headers["Proxy-Authorization"] = basic("cargo-vouch:s3cret")
    gate.requestheaders(admitted)
    assert admitted.response is None and "Proxy-Authorization" not in admitted.request.headers


def test_a_flow_answered_already_is_left_alone() -> None:
    gate = ProxyCredential("cargo-vouch", "s3cret")
    flow = connect_flow(None)
    flow.response = tflow.tresp(status_code=403)
    gate.http_connect(flow)
    assert flow.response.status_code == 403


def test_basic_credential_reads_only_basic() -> None:
    assert basic_credential(basic("a:b")) == b"a:b"
    assert basic_credential("  basic " + base64.b64encode(b"a:b").decode()) == b"a:b"
    assert basic_credential("Digest abc") == b""
    assert basic_credential("") == b""
