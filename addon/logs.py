"""Where cargo-vouch's log lines come from and what they look like.

Every module logs through `get_logger(__name__)`, a child of the `cargo_vouch` logger, so
one switch (`logging.getLogger("cargo_vouch")`) governs them all. The `cargo-vouch: `
prefix that tells our lines from mitmproxy's is added here, once: in mitmdump the lines
are formatted by mitmproxy's own handler, which is not ours to replace, so the prefix is
put on the message rather than on a handler's formatter.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

ROOT = "cargo_vouch"
PREFIX = "cargo-vouch: "


class _Prefixed(logging.LoggerAdapter):  # type: ignore[type-arg]
    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        return f"{PREFIX}{msg}", kwargs


def get_logger(module: str) -> logging.LoggerAdapter:  # type: ignore[type-arg]
    """The logger of a module of the `cargo_vouch` package (pass `__name__`)."""
    if module != ROOT and not module.startswith(ROOT + "."):
        raise ValueError(f"{module} is not a module of {ROOT}")
    return _Prefixed(logging.getLogger(module), {})


def printable(text: str, limit: int = 200) -> str:
    """What a client sent (a method, a path), fit for one log line: no escape sequence or
    other control character reaches the user's terminal, and no line runs on and on."""
    shown = "".join(ch if " " <= ch <= "~" else "?" for ch in text)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def request_text(method: str, path: str) -> str:
    """A request as every log line names it: method and path, each only as printable text."""
    return f"{printable(method, 20)} {printable(path)}"
