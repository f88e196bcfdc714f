"""What happens to a registry request, decided in one place from what its head says.

The injector asks `decide` and carries out the verdict; nothing here awaits or touches the
flow, so every rule can be read (and tested) in order: a request Cargo never makes is
refused, a write the config does not allow is refused, a publish over the size limit is
refused, a write whose token or touch needs its body goes to the relay, anything else is
authorized — after a touch when the registry wants one for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from cargo_vouch.config import ascii_number
from cargo_vouch.protocol import Operation, Owners, Unyank, Yank
from cargo_vouch.proxy.answers import REFUSED_STATUS
from cargo_vouch.proxy.publish_body import too_large_message
from cargo_vouch.proxy.routing import READ, PublishUpload, Route, Unrecognised


@dataclass(frozen=True)
class Refuse:
    """Answered by the proxy with this line; nothing reaches the registry."""

    message: str
    status: int = REFUSED_STATUS


@dataclass(frozen=True)
class Divert:
    """To the write relay, which reads the body before it asks for the touch and the token."""


@dataclass(frozen=True)
class Authorize:
    """Gets the provider's token for `operation`, after a touch when `touch` says so."""

    operation: Operation
    touch: bool = False
    #: The sparse index's config.json: its answer is read (dl, api) and rewritten.
    config_json: bool = False


Verdict = Refuse | Divert | Authorize
#: The verdicts nearly every request gets, made once.
_READ = Authorize(READ)
_READ_CONFIG_JSON = Authorize(READ, config_json=True)


def decide(route: Route, method: str, path: str, content_length: str | None = None) -> Verdict:
    """The verdict for a registry request with this method, path and Content-Length."""
    registry = route.registry.config
    operation = route.operation
    if isinstance(operation, Unrecognised):
        return Refuse(
            f"cargo-vouch: {method} {path} to registry '{registry.name}' is not a request Cargo "
            "makes (neither a read nor publish, yank, unyank or owners); refused"
        )
    if route.is_write and not registry.allow_publish:
        return Refuse(
            f"cargo-vouch: {operation.kind} to registry '{registry.name}' is refused: set allow-publish = true "
            f"in [registries.{registry.name}] of the cargo-vouch config to allow it"
        )
    if isinstance(operation, PublishUpload):
        # The token request names the crate's checksum, from the end of the body.
        if content_length is not None and (ascii_number(content_length) or 0) > registry.max_publish_size:
            return Refuse(too_large_message(registry.name, registry.max_publish_size), status=413)
        return Divert()
    if isinstance(operation, Owners) and method != "GET" and registry.touch:
        return Divert()  # the touch names the users added or removed, from the body
    # What is left to touch for is a yank or unyank; listing owners changes nothing.
    config_json = registry.is_sparse and path == route.registry.index.path + "config.json"
    if operation is READ:
        return _READ_CONFIG_JSON if config_json else _READ
    touch = registry.touch and isinstance(operation, Yank | Unyank)
    return Authorize(operation, touch=touch, config_json=config_json)
