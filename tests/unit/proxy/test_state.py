"""The registry state: what is learned from config.json, and what is said about it."""

from __future__ import annotations

from tests.unit.proxy.conftest import SPARSE_CONFIG


async def test_dl_on_an_unconfigured_host_is_reported_with_the_line_to_add(proxy, vouch_session, caplog):
    tctx, state, _, injector = proxy(SPARSE_CONFIG)
    state.learned_from(state.router.registries[0], {"dl": "https://files.corp.example/crates"})
    assert "is on files.corp.example, which is not configured: it gets no token and TLS to it is tunnelled" in caplog.text
    assert 'add "https://files.corp.example:443/" to prefixes in [registries.corp]' in caplog.text
    assert not state.router.intercepts("files.corp.example", 443)


async def test_config_json_is_reported_once_not_on_every_cargo_run(proxy, vouch_session, caplog):
    caplog.set_level("INFO")
    tctx, state, _, _ = proxy(SPARSE_CONFIG + 'prefixes = ["https://files.corp.example/"]\n')
    registry = state.router.registries[0]
    for _ in range(3):
        state.learned_from(registry, {"dl": "https://files.corp.example/crates", "api": "https://evil.test/api"})
    assert caplog.text.count("is on evil.test, which is not configured") == 1
    assert caplog.text.count("dl=https://files.corp.example:443/crates/") == 1
