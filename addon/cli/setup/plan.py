"""What every part of `cargo-vouch setup` shares: the plan it builds, the error it reports,
and the small rules for editing TOML text and printing git keys that planning and undoing
both follow."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cargo_vouch import paths
from cargo_vouch.cargo_config import redact_url
from cargo_vouch.config import parse_listen
from cargo_vouch.errors import VouchError

PROG = "cargo-vouch setup"


class SetupError(VouchError):
    """A problem to report in one line; exit status 2 for bad usage, 1 otherwise."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = code


@dataclass
class FileWrite:
    """One file to write (`new`) or delete (`new is None`)."""

    path: Path
    old: str | None
    new: str | None
    make_dirs: list[Path] = field(default_factory=list)  # to create, outermost first
    remove_dirs: list[Path] = field(default_factory=list)  # to remove if empty, innermost first


@dataclass
class GitWrite:
    """One `git config --global` key and the full list of values it should end up with."""

    key: str
    old: list[str]
    new: list[str]


@dataclass
class Plan:
    records: dict[str, Any]
    files: list[FileWrite] = field(default_factory=list)
    git: list[GitWrite] = field(default_factory=list)
    done: list[str] = field(default_factory=list)  # summary for stdout
    notes: list[str] = field(default_factory=list)  # warnings for stderr


def proxy_url(listen: str, source: str = "--listen") -> str:
    """`http://HOST:PORT` for Cargo's `http.proxy`; only loopback is allowed.

    The proxy holds registry tokens; listening beyond this machine would hand them out.
    """
    code = 2 if source == "--listen" else 1
    try:
        address = parse_listen(listen)
    except ValueError as exc:
        raise SetupError(f"{source} {listen!r}: {exc} (e.g. {paths.DEFAULT_LISTEN})", code) from None
    if address.port == 0:
        raise SetupError(f"{source} {listen!r}: Cargo needs a fixed port", code)
    return address.url


def redact_key(key: str) -> str:
    """A git config key such as `http.<url>.proxy` fit to print."""
    section, _, rest = key.partition(".")
    url, _, var = rest.rpartition(".")
    return f"{section}.{redact_url(url)}.{var}"


def plain(item: Any) -> Any:
    """A tomlkit item as plain Python, for comparing with what setup wrote."""
    return item.unwrap() if hasattr(item, "unwrap") else item


def same_newlines(original: str, new: str) -> str:
    """Keep a CRLF file CRLF: tomlkit writes new lines with a bare LF."""
    if "\r\n" in original:
        return re.sub(r"(?<!\r)\n", "\r\n", new)
    return new


def tidy_end(text: str) -> str:
    """Drop the blank lines a removed table leaves at the end of the file."""
    stripped = text.rstrip("\r\n")
    if stripped == text:
        return text
    return stripped + ("\r\n" if text.endswith("\r\n") else "\n") if stripped else ""
