"""Loading mitmproxy fast: without the default addons the in-process master never uses,
and without collecting garbage meanwhile.

`mitmproxy.master` imports `mitmproxy.addons.termlog`, and the package's `__init__` imports
all thirty default addons, with Flask, LDAP and htpasswd support among them: three tenths of
a second of every `cargo vouch run`, before CMD can start, for code that never runs. The
package is registered here without running its `__init__`, so that only the submodules
asked for are loaded. Only the lean master (run, proxy) does this; `mitmdump` loads its
addons as usual.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import sys
from collections.abc import Iterator


def skip_default_addons() -> None:
    """Make `mitmproxy.addons` an empty package (its submodules import as usual). A no-op
    once the package is loaded, e.g. when `mitmdump` runs the addon."""
    if "mitmproxy.addons" in sys.modules:
        return
    spec = importlib.util.find_spec("mitmproxy.addons")
    if spec is None or spec.submodule_search_locations is None:
        return
    package = importlib.util.module_from_spec(spec)
    sys.modules["mitmproxy.addons"] = package
    sys.modules["mitmproxy"].addons = package  # type: ignore[attr-defined]


@contextlib.contextmanager
def starting_up() -> Iterator[None]:
    """No garbage collection while mitmproxy loads and starts: it allocates hundreds of
    thousands of objects and frees almost none, so collecting meanwhile is start-up time
    spent for nothing (a tenth of `run`'s). What start-up made lives as long as the proxy,
    so it is then frozen out of the collector's sight, which also shortens each later
    collection while requests are served."""
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()
