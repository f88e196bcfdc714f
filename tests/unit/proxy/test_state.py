"""The registry state: what is learned from config.json, and what is said about it."""

from __future__ import annotations

from tests.unit.proxy.conftest import SPARSE_CONFIG


async def test_dl_on_a_host_outside_the_ca_is_reported(proxy, vouch_session, caplog):
    tctx, state, _, injector = proxy(SPARSE_CONFIG)
    state.learned_from(state.router.registries[0], {"dl": "https://files.corp.example/crates"})
    assert "files.corp.example, which the CA does not cover" in caplog.text
    assert 'add "https://files.corp.example:443/crates/" to prefixes' in caplog.text


async def test_config_json_is_reported_once_not_on_every_cargo_run(proxy, vouch_session, caplog):
    caplog.set_level("INFO")
    tctx, state, _, _ = proxy(SPARSE_CONFIG)
    registry = state.router.registries[0]
    for _ in range(3):
        state.learned_from(registry, {"dl": "https://files.corp.example/crates"})
    assert caplog.text.count("which the CA does not cover") == 1
    assert caplog.text.count("dl=https://files.corp.example:443/crates/") == 1
