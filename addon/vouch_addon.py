"""cargo-vouch as a mitmproxy script: `mitmdump -s addon/vouch_addon.py`.

The parts share one `VouchState`; each is a small addon with one concern, in the order
mitmproxy should call them.
"""

from __future__ import annotations

import sys
from pathlib import Path

# mitmproxy loads this file by path; make the `addon` and `ca` packages importable even
# when the project is not installed.
_PROJECT_ROOT = str(Path(__file__).resolve().parent.parent)
if _PROJECT_ROOT not in sys.path:
    sys.path.insert(0, _PROJECT_ROOT)

from addon.inject import TokenInjector  # noqa: E402
from addon.loader import ConfigLoader  # noqa: E402
from addon.loopback import LoopbackClients  # noqa: E402
from addon.state import VouchState  # noqa: E402
from addon.tls_scope import TlsScope  # noqa: E402
from addon.write_gate import WriteGate  # noqa: E402


def make_addons() -> list[object]:
    state = VouchState()
    return [LoopbackClients(), ConfigLoader(state), TlsScope(state), TokenInjector(state, WriteGate(state))]


addons = make_addons()
