"""Cargo's publish body, read as it streams past: spooled to a private file, parsed and
hashed on the way, never held in memory.

The body is `u32 LE JSON length, JSON metadata, u32 LE length, the .crate file`. Cargo's
credential protocol wants the crate's name, version and SHA-256 (`cksum`) in the token
request for a publish, so the whole body has to arrive before the request can leave; a
crate of hundreds of megabytes must not cost as much memory.
"""

from __future__ import annotations

import hashlib
import json
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

#: The JSON head carries the README too; beyond this it is not a publish we want to parse.
MAX_METADATA = 16 * 1024 * 1024


class PublishBodyError(Exception):
    """The body is not Cargo's publish format; the message says where it went wrong."""


class PublishTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the publish body is larger than {limit} bytes")
        self.limit = limit


def too_large_message(registry: str, limit: int) -> str:
    """What Cargo shows for a crate over the limit, whether Content-Length said so or the body did."""
    return (
        f"cargo-vouch: the crate is larger than max-publish-size ({limit} bytes) of "
        f"[registries.{registry}]; raise it there if the registry takes larger crates"
    )


@dataclass(frozen=True)
class PublishedCrate:
    """What the provider is told about a publish (Cargo's `name`, `vers`, `cksum`)."""

    name: str
    vers: str
    cksum: str
    size: int  # of the whole body, for Content-Length upstream


class PublishSpool:
    """Takes the body chunk by chunk; `finish()` says what it was. Use as a context
    manager: the spool file is closed (and so gone) on exit, whatever happened."""

    def __init__(self, limit: int, directory: Path | None = None) -> None:
        self.limit = limit
        # Unlinked from the start (O_TMPFILE or unlink at once): no other process can open
        # it, and nothing is left behind even if the proxy is killed mid-publish.
        self.file: BinaryIO = tempfile.TemporaryFile(prefix="cargo-vouch-publish-", dir=directory)
        self.size = 0
        self._head = bytearray()  # the length prefixes and the JSON, until parsed
        self._json_len: int | None = None
        self._metadata: dict[str, object] | None = None
        self._crate_len: int | None = None
        self._crate_seen = 0
        self._crate_hash = hashlib.sha256()

    def __enter__(self) -> PublishSpool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise PublishTooLarge(self.limit)
        self.file.write(chunk)
        view = memoryview(chunk)
        while view:
            view = self._consume(view)

    def _consume(self, view: memoryview) -> memoryview:
        if self._crate_len is not None:  # in the .crate: hash it, keep nothing
            take = min(len(view), self._crate_len - self._crate_seen)
            if take == 0:
                raise PublishBodyError("bytes after the end of the .crate file")
            self._crate_hash.update(view[:take])
            self._crate_seen += take
            return view[take:]
        need = 4 if self._json_len is None else 4 + self._json_len + 4
        take = min(len(view), need - len(self._head))
        self._head += view[:take]
        if len(self._head) == need:
            if self._json_len is None:
                (self._json_len,) = struct.unpack("<I", self._head)
                if self._json_len > MAX_METADATA:
                    raise PublishBodyError(f"metadata of {self._json_len} bytes (at most {MAX_METADATA})")
            else:
                self._metadata = _parse_metadata(bytes(self._head[4 : 4 + self._json_len]))
                (self._crate_len,) = struct.unpack("<I", self._head[-4:])
                self._head = bytearray()
        return view[take:]

    def finish(self) -> PublishedCrate:
        if self._metadata is None or self._crate_len is None:
            raise PublishBodyError("the body ends before the .crate file starts")
        if self._crate_seen != self._crate_len:
            raise PublishBodyError(f"the .crate file is cut short ({self._crate_seen} of {self._crate_len} bytes)")
        self.file.flush()
        self.file.seek(0)
        return PublishedCrate(
            name=str(self._metadata["name"]),
            vers=str(self._metadata["vers"]),
            cksum=self._crate_hash.hexdigest(),
            size=self.size,
        )


def _parse_metadata(data: bytes) -> dict[str, object]:
    try:
        metadata = json.loads(data)
    except ValueError:
        raise PublishBodyError("the metadata is not JSON") from None
    if not isinstance(metadata, dict):
        raise PublishBodyError("the metadata is not a JSON object")
    for key in ("name", "vers"):
        if not isinstance(metadata.get(key), str) or not metadata[key]:
            raise PublishBodyError(f"the metadata has no '{key}'")
    return metadata
