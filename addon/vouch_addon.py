"""cargo-vouch as a mitmproxy script: `mitmdump -s addon/vouch_addon.py` in an installed
checkout, or `mitmdump -s "$(cargo vouch addon-path)"` for a pip install.

The addons live in the installed `cargo_vouch` package; this file only hands them to
mitmproxy, so the script and `cargo vouch proxy` can never run different code.
"""

from __future__ import annotations

import logging

try:
    from cargo_vouch.proxy.addons import make_addons
except ModuleNotFoundError as missing:
    if missing.name != "cargo_vouch":
        raise
    # mitmproxy swallows a script's SystemExit and would run on without us, tunnelling
    # everything unauthenticated; an error logged while starting makes mitmdump exit 1.
    logging.getLogger("cargo_vouch").error(
        "cargo-vouch: the cargo_vouch package is not installed for this mitmdump: run 'make install' "
        "in the checkout (or 'pip install .') and use the mitmdump it installs"
    )
    addons: list[object] = []
else:
    addons = make_addons()
