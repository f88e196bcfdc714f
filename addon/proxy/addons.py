"""The cargo-vouch addons, in the order mitmproxy should call them. They share one
`VouchState`; each is a small addon with one concern."""

from __future__ import annotations

from cargo_vouch.config import VouchConfig
from cargo_vouch.proxy.after_headers import AfterHeaders
from cargo_vouch.proxy.clients import LocalClients
from cargo_vouch.proxy.inject import TokenInjector
from cargo_vouch.proxy.loader import ConfigLoader
from cargo_vouch.proxy.sealed_imports import SealImports
from cargo_vouch.proxy.state import VouchState
from cargo_vouch.proxy.tls_scope import TlsScope
from cargo_vouch.proxy.write_gate import WriteGate


def make_addons(state: VouchState | None = None, config: VouchConfig | None = None) -> list[object]:
    """The addons, sharing `state` (a new one if not given). With `config`, they use that
    config and never read the file (see ConfigLoader)."""
    state = state or VouchState()
    return [
        LocalClients(), ConfigLoader(state, config), TlsScope(state), TokenInjector(state, WriteGate(state)),
        AfterHeaders(state), SealImports(),
    ]
