"""Cargo's credential-provider protocol, version 1, as typed messages — in both dialects.

Mirrors the types of Cargo's `cargo-credential` crate (`CredentialRequest`,
`CredentialResponse::Get`, `CacheControl`, `Error`). Two dialects of it are spoken in the
wild, and a provider that answers in either must work:

- Cargo's own (what Cargo >= 1.74 sends and any provider built on `cargo-credential`
  answers): the action's fields flattened into the request, answers wrapped as
  `{"Ok":{…}}` / `{"Err":{…}}`.
- Vouch's (`vouch credential cargo`, see VOUCH.md): the action read from a nested
  `"action":{…}` object, answers unwrapped, with `"cache":{"expires":{"expiration":N}}`
  and `"operation-independent"`.

So every request carries the action twice, flattened and nested (each side ignores the
form it does not read), and `parse_response` reads either answer into the same types.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar, Literal, Protocol

PROTOCOL_VERSION = 1

ErrorKind = Literal["not-found", "url-not-supported", "operation-not-supported", "other"]
#: Error kinds passed on as they are; any other kind a provider names becomes "other".
_KNOWN_ERROR_KINDS: frozenset[str] = frozenset({"not-found", "url-not-supported", "operation-not-supported"})
#: Error kinds Vouch's unwrapped dialect uses besides those ("other" included).
_VOUCH_ERROR_KINDS: frozenset[str] = _KNOWN_ERROR_KINDS | {"other", "unsupported-version"}


class Dialect(StrEnum):
    """How a provider answered: which of the protocol's two spellings it speaks."""

    CARGO = "cargo"
    VOUCH = "vouch"

    def describe(self) -> str:
        if self is Dialect.CARGO:
            return 'answers in Cargo\'s protocol ({"Ok":…}/{"Err":…})'
        return "answers in Vouch's dialect (unwrapped)"


class ProtocolError(Exception):
    """The provider said something that is not protocol v1 in either dialect."""


@dataclass(frozen=True)
class Expires:
    """Reuse while now + 60 s < expiration (unix seconds)."""

    expiration: int


@dataclass(frozen=True)
class Session:
    """Reuse until the registry refuses it."""


@dataclass(frozen=True)
class Never:
    """One use."""


#: `expires` always carries its expiration: one without cannot be built.
CacheControl = Expires | Session | Never


@dataclass(frozen=True)
class RegistryInfo:
    index_url: str
    name: str | None

    def to_json(self) -> dict[str, object]:
        info: dict[str, object] = {"index-url": self.index_url}
        if self.name is not None:
            info["name"] = self.name
        return info


# -- operations: what a token is asked for (cargo-credential's `Operation`) -------------


@dataclass(frozen=True)
class Read:
    """Index files, config.json, downloads, search."""

    kind: ClassVar[str] = "read"


@dataclass(frozen=True)
class Publish:
    """`cargo publish`: the crate's name, version and the SHA-256 of its .crate file."""

    name: str
    vers: str
    cksum: str
    kind: ClassVar[str] = "publish"


@dataclass(frozen=True)
class Yank:
    name: str
    vers: str
    kind: ClassVar[str] = "yank"


@dataclass(frozen=True)
class Unyank:
    name: str
    vers: str
    kind: ClassVar[str] = "unyank"


@dataclass(frozen=True)
class Owners:
    """Listing, adding or removing the owners of crate `name`."""

    name: str
    kind: ClassVar[str] = "owners"


Operation = Read | Publish | Yank | Unyank | Owners
#: The operations that change something at the registry.
Write = Publish | Yank | Unyank | Owners


def operation_fields(operation: Operation) -> dict[str, str]:
    """The fields the protocol sends with the operation (`name`, `vers`, `cksum`)."""
    return dataclasses.asdict(operation)


@dataclass(frozen=True)
class CredentialRequest:
    """A `get` for one operation, written so that both dialects read it.

    Cargo's line — `{"v":1,"registry":…,"kind":"get","operation":…,<fields>,"args":[]}` —
    plus the same action as `"action":{"kind":"get","operation":…,<fields>}` for Vouch.
    """

    registry: RegistryInfo
    operation: Operation = Read()
    args: tuple[str, ...] = ()

    def action(self) -> dict[str, object]:
        return {"kind": "get", "operation": self.operation.kind, **operation_fields(self.operation)}

    def to_line(self) -> bytes:
        action = self.action()
        message: dict[str, object] = {
            "v": PROTOCOL_VERSION,
            "registry": self.registry.to_json(),
            **action,
            "action": action,
            "args": list(self.args),
        }
        return json.dumps(message, separators=(",", ":")).encode() + b"\n"


@dataclass(frozen=True)
class Token:
    """A successful `get`. `repr` hides the value so it cannot reach a log by accident."""

    value: str = field(repr=False)
    cache: CacheControl
    operation_independent: bool = True
    #: How an external provider answered; None for the built-in ones.
    dialect: Dialect | None = field(default=None, compare=False)

    @property
    def expiration(self) -> int | None:
        return self.cache.expiration if isinstance(self.cache, Expires) else None


class ProviderError(Exception):
    """An error answer, or our own failure to get one (kind "other")."""

    def __init__(self, kind: ErrorKind, message: str, dialect: Dialect | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        #: How the provider answered, when the error is its answer.
        self.dialect = dialect


class Provider(Protocol):
    """What turns (registry, operation) into a token: Cargo's provider model."""

    #: Shown in error messages and `doctor`.
    description: str
    #: What to tell the user when the provider has no credential.
    login_hint: str

    async def get(self, operation: Operation) -> Token:
        """The token, or ProviderError."""
        ...


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
    """The token of a `get` answer in either dialect; raises ProviderError for an error
    answer and ProtocolError for anything else, which is never quoted."""
    try:
        message = json.loads(line)
    except (ValueError, RecursionError):
        raise ProtocolError(f"answer is not JSON: {_preview(line)}") from None
    if not isinstance(message, dict):
        raise ProtocolError("answer is not a JSON object")
    if "Ok" in message or "Err" in message:
        return _parse_cargo(message)
    if "kind" in message:
        return _parse_vouch(message)
    raise ProtocolError('answer is neither Cargo\'s {"Ok":…} / {"Err":…} nor Vouch\'s {"kind":…}')


def _parse_cargo(message: dict[str, object]) -> Token:
    """`{"Ok":{"kind":"get","token":…,"cache":"expires","expiration":N,"operation_independent":…}}`
    or `{"Err":{"kind":…,"message":…}}`."""
    if len(message) != 1:
        raise ProtocolError('answer has keys beside "Ok" or "Err"')
    if "Err" in message:
        err = message["Err"]
        if not isinstance(err, dict) or not isinstance(err.get("kind"), str):
            raise ProtocolError("Err without a kind")
        raise _error(err["kind"], err.get("message"), Dialect.CARGO)
    ok = message["Ok"]
    if not isinstance(ok, dict) or ok.get("kind") != "get":
        raise ProtocolError("Ok answer is not of kind 'get'")
    cache: CacheControl
    match ok.get("cache"):
        case "expires":
            cache = Expires(_expiration(ok.get("expiration")))
        case "session":
            cache = Session()
        case "never":
            cache = Never()
        case _:
            raise ProtocolError("unknown cache control (expected \"expires\", \"session\" or \"never\")")
    return Token(_token(ok), cache, _independent(ok, "operation_independent"), Dialect.CARGO)


def _parse_vouch(message: dict[str, object]) -> Token:
    """`{"kind":"get","token":…,"cache":{"expires":{"expiration":N}}|"session"|"never",
    "operation-independent":…}` or `{"kind":"not-found"|…,"message":…}`."""
    kind = message["kind"]
    if kind != "get":
        if not isinstance(kind, str) or kind not in _VOUCH_ERROR_KINDS:
            raise ProtocolError("unwrapped answer of an unknown kind (expected \"get\" or an error kind)")
        raise _error(kind, message.get("message"), Dialect.VOUCH)
    cache: CacheControl
    match message.get("cache"):
        case {"expires": {"expiration": expiration}} as shape if len(shape) == 1:
            cache = Expires(_expiration(expiration))
        case "session":
            cache = Session()
        case "never":
            cache = Never()
        case _:
            raise ProtocolError(
                'unknown cache control (expected {"expires":{"expiration":N}}, "session" or "never")'
            )
    return Token(_token(message), cache, _independent(message, "operation-independent"), Dialect.VOUCH)


def _error(kind: str, message: object, dialect: Dialect) -> ProviderError:
    known: ErrorKind = kind if kind in _KNOWN_ERROR_KINDS else "other"  # type: ignore[assignment]
    return ProviderError(known, message if isinstance(message, str) and message else kind, dialect)


def _token(answer: dict[str, object]) -> str:
    token = answer.get("token")
    if not isinstance(token, str) or not token:
        raise ProtocolError("get answer has no token")
    return token


def _expiration(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError("cache 'expires' without an integer expiration")
    return value


def _independent(answer: dict[str, object], key: str) -> bool:
    independent = answer.get(key, True)
    if not isinstance(independent, bool):
        raise ProtocolError(f"{key} is not a boolean")
    return independent


def _preview(line: bytes) -> str:
    """Describes a bad line without quoting it: a misconfigured provider's stray output
    may well be a raw token (`vouch credential token` prints one), and this goes to logs."""
    text = line.decode("utf-8", "replace").strip()
    return f"a line of {len(text)} characters" if text else "an empty line"
