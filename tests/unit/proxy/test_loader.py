"""The config loader: settings that would expose tokens stop the proxy."""

from __future__ import annotations

import pytest

from tests.unit.proxy.conftest import SPARSE_CONFIG


@pytest.mark.parametrize("option", [{"proxy_debug": True}, {"ssl_insecure": True}, {"listen_host": "0.0.0.0"},
                                    {"connection_strategy": "lazy"}, {"validate_inbound_headers": False}])
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
