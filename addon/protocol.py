"""Cargo's credential-provider protocol, version 1, as typed messages.

Mirrors the types of Cargo's `cargo-credential` crate (`CredentialRequest`,
`CredentialResponse::Get`, `Error`) so that any provider written for Cargo, Vouch's
included, answers us exactly as it answers Cargo.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

PROTOCOL_VERSION = 1

CacheControl = Literal["expires", "session", "never"]
ErrorKind = Literal["not-found", "url-not-supported", "operation-not-supported", "other"]


class ProtocolError(Exception):
    """The provider said something that is not protocol v1."""


@dataclass(frozen=True)
class RegistryInfo:
    index_url: str
    name: str | None

    def to_json(self) -> dict[str, object]:
        info: dict[str, object] = {"index-url": self.index_url}
        if self.name is not None:
            info["name"] = self.name
        return info


@dataclass(frozen=True)
class CredentialRequest:
    """`{"v":1,"registry":…,"kind":"get","operation":…,"args":[]}` plus the operation's fields."""

    registry: RegistryInfo
    operation: str = "read"
    operation_fields: dict[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()

    def to_line(self) -> bytes:
        message: dict[str, object] = {
            "v": PROTOCOL_VERSION,
            "registry": self.registry.to_json(),
            "kind": "get",
            "operation": self.operation,
            **self.operation_fields,
            "args": list(self.args),
        }
        return json.dumps(message, separators=(",", ":")).encode() + b"\n"


@dataclass(frozen=True)
class Token:
    """A successful `get`. `repr` hides the value so it cannot reach a log by accident."""

    value: str = field(repr=False)
    cache: CacheControl
    expiration: int | None = None
    operation_independent: bool = True


class ProviderError(Exception):
    """An `Err` answer, or our own failure to get one (kind "other")."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def parse_hello(line: bytes) -> None:
    try:
        hello = json.loads(line)
    except ValueError:
        raise ProtocolError(f"expected the hello {{\"v\":[1]}}, got {_preview(line)}") from None
    if not isinstance(hello, dict) or not isinstance(hello.get("v"), list):
        raise ProtocolError(f"expected the hello {{\"v\":[1]}}, got {_preview(line)}")
    if PROTOCOL_VERSION not in hello["v"]:
        raise ProtocolError(f"provider speaks protocol versions {hello['v']}, not 1")


def parse_response(line: bytes) -> Token:
    """Returns the token or raises ProviderError for an `Err`; ProtocolError for garbage."""
    try:
        message = json.loads(line)
    except ValueError:
        raise ProtocolError(f"answer is not JSON: {_preview(line)}") from None
    if not isinstance(message, dict) or len(message) != 1:
        raise ProtocolError("answer is neither {\"Ok\":…} nor {\"Err\":…}")
    if "Err" in message:
        err = message["Err"]
        if not isinstance(err, dict) or not isinstance(err.get("kind"), str):
            raise ProtocolError("Err without a kind")
        kind = err["kind"]
        if kind not in ("not-found", "url-not-supported", "operation-not-supported"):
            kind = "other"
        text = err.get("message")
        raise ProviderError(kind, text if isinstance(text, str) else kind)
    ok = message.get("Ok")
    if not isinstance(ok, dict) or ok.get("kind") != "get":
        raise ProtocolError("Ok answer is not of kind 'get'")
    token = ok.get("token")
    if not isinstance(token, str) or not token:
        raise ProtocolError("Ok answer has no token")
    cache = ok.get("cache")
    if cache not in ("expires", "session", "never"):
        raise ProtocolError(f"unknown cache control {cache!r}")
    expiration = ok.get("expiration")
    if cache == "expires" and (isinstance(expiration, bool) or not isinstance(expiration, int)):
        raise ProtocolError("cache 'expires' without an integer expiration")
    independent = ok.get("operation_independent", True)
    if not isinstance(independent, bool):
        raise ProtocolError("operation_independent is not a boolean")
    return Token(token, cache, expiration if cache == "expires" else None, independent)


def _preview(line: bytes) -> str:
    """Describes a bad line without quoting it: a misconfigured provider's stray output
    may well be a raw token (`vouch credential token` prints one), and this goes to logs."""
    text = line.decode("utf-8", "replace").strip()
    return f"a line of {len(text)} characters" if text else "an empty line"
