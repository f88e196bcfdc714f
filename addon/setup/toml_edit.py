"""Small helpers for editing TOML text with tomlkit without disturbing the rest of the file."""

from __future__ import annotations

import re
from typing import Any


def _plain(item: Any) -> Any:
    """A tomlkit item as plain Python, for comparing with what setup wrote."""
    return item.unwrap() if hasattr(item, "unwrap") else item


def _same_newlines(original: str, new: str) -> str:
    """Keep a CRLF file CRLF: tomlkit writes new lines with a bare LF."""
    if "\r\n" in original:
        return re.sub(r"(?<!\r)\n", "\r\n", new)
    return new


def _tidy_end(text: str) -> str:
    """Drop the blank lines a removed table leaves at the end of the file."""
    stripped = text.rstrip("\r\n")
    if stripped == text:
        return text
    return stripped + ("\r\n" if text.endswith("\r\n") else "\n") if stripped else ""
