"""The addons loaded into mitmproxy's own `taddons` context, and requests built with `tflow`."""

from __future__ import annotations

from pathlib import Path

import pytest
from mitmproxy import http
from mitmproxy.addons import proxyserver, tlsconfig
from mitmproxy.test import taddons, tflow, tutils

from cargo_vouch.proxy.addons import make_addons

SPARSE_INDEX = "sparse+https://cargo.corp.example/index/"
GIT_INDEX = "https://git.corp.example/cargo/index.git"
SPARSE_CONFIG = f'[registries.corp]\nindex = "{SPARSE_INDEX}"\n'


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
        _, loader, scope, injector, _, _ = addons
        tctx.configure(loader, vouch_config=str(write_config(tmp_path, config_text)))
        return tctx, loader.state, scope, injector

    yield start
    for context in contexts:
        context.__exit__(None, None, None)


def registry_request(host="cargo.corp.example", path="/index/3/f/foo", method="GET", port=443, scheme="https",
                     headers=(), host_header: str | None = None):
    """A request as it arrives in a CONNECT tunnel to host:port: mitmproxy has set the
    request's host and port from the tunnel, the client sent `Host` (default: the tunnel's)."""
    if host_header is None:
        host_header = host if port == 443 else f"{host}:{port}"
    fields = [(b"Host", host_header.encode())] if host_header else []
    fields += [(k.encode(), v.encode()) for k, v in headers]
    flow = tflow.tflow(
        req=tutils.treq(host=host, port=port, scheme=scheme.encode(), path=path.encode(), method=method.encode(),
                        headers=http.Headers(fields))
    )
    flow.server_conn.address = (host, port)
    flow.response = None
    return flow
