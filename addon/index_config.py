"""A registry index's `config.json`: where its downloads (`dl`) and Web API (`api`) live.

The proxy reads it to learn which URLs carry the registry's token, and hands Cargo a copy
without `auth-required` (the proxy authenticates, so Cargo must not try).
"""

from __future__ import annotations

import json

#: A config.json is a few hundred bytes; beyond this it is not one, and is not read whole.
MAX_CONFIG_JSON = 1 << 20


class IndexConfigError(Exception):
    """config.json could not be read or is not a JSON object; the message says which."""


def parse_index_config(body: bytes, where: str) -> dict[str, object]:
    """The JSON object, or IndexConfigError: also for a body over MAX_CONFIG_JSON and for
    nesting deeper than the parser goes (which would otherwise be a RecursionError)."""
    if len(body) > MAX_CONFIG_JSON:
        raise IndexConfigError(f"{where}: config.json is larger than {MAX_CONFIG_JSON} bytes")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise IndexConfigError(f"{where}: config.json is not JSON") from None
    if not isinstance(data, dict):
        raise IndexConfigError(f"{where}: config.json is not a JSON object")
    return data


def without_auth_required(data: dict[str, object]) -> bytes:
    """config.json as handed to Cargo: the proxy authenticates, so Cargo must not try."""
    kept = {key: value for key, value in data.items() if key != "auth-required"}
    return json.dumps(kept, indent=2).encode() + b"\n"
