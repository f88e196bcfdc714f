"""Once the proxy serves requests, it imports nothing more.

A build script runs as the proxy's own user, so it can write into every directory Python
finds modules in for a user's install: the console script's folder, the venv, ~/.local,
an editable checkout. A module first imported after the build has started would run the
build's code inside the proxy, which holds the CI secret and the tokens (review 13 did
exactly that with a `jwt.py` beside the console script, and with a `fido2.py` loaded at
the first write, which waved the write past the touch). So everything the proxy can need
is imported while it starts, before CMD runs or a connection is served; after that an
import is refused with one line, never performed. For the same reason mitmdump stops
re-reading its `-s` scripts when their files change.
"""

from __future__ import annotations

import encodings
import importlib
import importlib.abc
import importlib.machinery
import pkgutil
import sys
import types
from collections.abc import Sequence

from mitmproxy import ctx

from cargo_vouch.logs import get_logger

logger = get_logger(__name__)

#: Imported on demand by our code or by mitmproxy's, on paths a request can take: the
#: touch (python-fido2, only where `touch = true`), the codecs that headers, IDNA host
#: names and error pages use, and modules mitmproxy loads on its first use.
PRELOAD = (
    "cargo_vouch.touch.challenge",
    "cargo_vouch.touch.device",
    "cargo_vouch.touch.enrollment",
    "fido2.hid",
    "concurrent.futures.thread",
    "encodings.ascii",
    "encodings.idna",
    "encodings.latin_1",
    "encodings.punycode",
    "encodings.utf_8",
)


class ImportSeal(importlib.abc.MetaPathFinder):
    """First on `sys.meta_path`: asked before any finder, for every module not yet loaded."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        logger.error(
            f"refused to import {fullname} after start-up (a module loaded now could be one a build "
            "script has just written); please report this as a bug"
        )
        raise ImportError(f"cargo-vouch: import of {fullname} refused after start-up", name=fullname)


SEAL = ImportSeal()


def preload() -> None:
    for name in PRELOAD:
        importlib.import_module(name)


def seal() -> None:
    """Imports what PRELOAD names, then refuses every further import."""
    preload()
    if SEAL not in sys.meta_path:
        sys.meta_path.insert(0, SEAL)


def unseal() -> None:
    """For tests, which go on importing after a proxy of theirs has run."""
    while SEAL in sys.meta_path:
        sys.meta_path.remove(SEAL)


class SealImports:
    """The addon that seals imports once the proxy runs (every addon configured, the
    listening sockets ready), for `run`, `cargo vouch proxy` and `mitmdump -s` alike.
    The seal stays until the process ends: `run` goes on after its proxy stops, while
    what CMD started may still be writing modules."""

    def running(self) -> None:
        if ctx.master.addons.get("scriptloader") is not None:
            # mitmdump: its dumper and HAR export decode bodies with whatever codec a
            # charset names. The lean master decodes none; it is spared the 50 ms.
            preload_codecs()
        seal()
        stop_script_reloads()


def preload_codecs() -> None:
    """Every codec of the standard library, loaded now rather than at its first use."""
    for module in pkgutil.iter_modules(encodings.__path__):
        try:
            importlib.import_module(f"encodings.{module.name}")
        except ImportError:  # another platform's (mbcs, oem)
            pass


def stop_script_reloads() -> None:
    """mitmdump re-reads a `-s` script whenever its file changes, and runs it: a build
    that rewrote vouch_addon.py (a file of the user's own) would have its code run in the
    proxy, past the seal, which only finders obey. Reloading is for writing a script, not
    for a proxy that holds tokens: after start-up, a changed script is not read again."""
    scripts = ctx.master.addons.get("scriptloader")
    for script in getattr(scripts, "addons", []):
        task = getattr(script, "reloadtask", None)
        if task is not None:
            task.cancel()
            script.reloadtask = None
            logger.info(f"{script.path}: not reloaded when it changes (restart mitmdump to load a change)")
