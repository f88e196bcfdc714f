"""Which requests belong to which registry, and what Cargo operation each one is.

A token is a bearer credential: whoever receives it can use it. So a request earns one
only when its scheme, host, port and path lie under a prefix the registry owns, compared
on the URL as it goes on the wire, with anything that could make a server resolve the
path elsewhere (dot segments, encoded slashes) treated as foreign.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar
from urllib.parse import unquote, urlsplit

from cargo_vouch.config import RegistryConfig, is_plain_path
from cargo_vouch.protocol import Owners, Read, Unyank, Yank


@dataclass(frozen=True)
class PublishUpload:
    """`PUT …/api/v1/crates/new`: a publish whose name, version and checksum are in its
    body, so its `Publish` operation is known only once the body has been read."""

    kind: ClassVar[str] = "publish"


@dataclass(frozen=True)
class Unrecognised:
    """Changes something (a method other than GET/HEAD, or git's POST for fetching) but is
    none of Cargo's writes: never sent with a token, whatever the config says."""

    kind: ClassVar[str] = "unrecognised"


#: What a request asks of the registry, as far as its method and path tell.
RequestOperation = Read | Yank | Unyank | Owners | PublishUpload | Unrecognised


@dataclass(frozen=True)
class UrlPrefix:
    host: str
    port: int
    path: str  # ends with "/" for directories, so "/index" never covers "/index-evil"

    @classmethod
    def parse(cls, url: str, *, directory: bool = True) -> UrlPrefix:
        """`directory=False` keeps a literal string prefix, for the head of a dl template."""
        parts = urlsplit(url)
        assert parts.scheme == "https" and parts.hostname, url
        path = parts.path or "/"
        if directory and not path.endswith("/"):
            path += "/"
        return cls(parts.hostname.lower(), parts.port or 443, path)

    def covers(self, host: str, port: int, path: str) -> bool:
        """`path` is the request path without query; equal to the prefix or beneath it."""
        if host.lower() != self.host or port != self.port:
            return False
        return path == self.path.rstrip("/") or path.startswith(self.path)

    @property
    def origin(self) -> tuple[str, int]:
        return (self.host, self.port)

    def __str__(self) -> str:
        return f"https://{self.host}:{self.port}{self.path}"


READ_METHODS = frozenset({"GET", "HEAD"})
_PATH_PARAMS = re.compile(r";[^/]*")


def crates_api_call(path: str) -> list[str] | None:
    """The segments after `api/v1/crates` in a Web API path, or None if it is not one.

    Looked for anywhere in the path, not only right under the learned `api` URL: a write
    must be recognised (and refused unless allowed) even before config.json was read, or
    when the index and the API share a prefix. `path` is decoded and without `;params`,
    as a server may read it; the keywords match in any case.
    """
    if "crates" not in path.lower():  # nearly every request (index files, downloads): no split needed
        return None
    parts = [p for p in path.split("/") if p]
    keys = [p.lower() for p in parts]
    starts = [i for i in range(len(keys) - 2) if keys[i : i + 3] == ["api", "v1", "crates"]]
    return parts[starts[-1] + 3 :] if starts else None


def classify_operation(path: str, method: str) -> RequestOperation:
    """Cargo's operation for a request, with the crate name (and version) it names.

    Decided as a server might decode the path (percent-escapes, `;params`, letter case),
    and by method first: what is not a read and not one of Cargo's writes is refused,
    so no spelling of a write passes as a read.
    """
    decoded = unquote(path) if "%" in path else path
    if ";" in decoded:
        decoded = _PATH_PARAMS.sub("", decoded)
    rest = crates_api_call(decoded)
    if rest:
        verb = rest[-1].lower()
        if len(rest) == 1 and verb == "new" and method == "PUT":
            return PublishUpload()
        if len(rest) == 3 and verb == "yank" and method == "DELETE":
            return Yank(rest[0], rest[1])
        if len(rest) == 3 and verb == "unyank" and method == "PUT":
            return Unyank(rest[0], rest[1])
        if len(rest) == 2 and verb == "owners" and method in ("GET", "PUT", "DELETE"):
            return Owners(rest[0])
    if method in READ_METHODS:
        return Read()
    if method == "POST" and decoded.lower().endswith("/git-upload-pack"):
        return Read()  # git's fetch: the refs it wants, in a POST body
    return Unrecognised()


@dataclass(frozen=True)
class Route:
    """A request that belongs to a registry: which one, and what it asks of it."""

    registry: RegistryRoutes
    operation: RequestOperation
    is_index: bool

    @property
    def is_write(self) -> bool:
        return not isinstance(self.operation, Read)


class RegistryRoutes:
    """The URL prefixes of one registry: configured ones plus `dl`/`api` from config.json."""

    def __init__(self, config: RegistryConfig) -> None:
        self.config = config
        self.index = UrlPrefix.parse(config.index_http_url)
        self.extra = tuple(UrlPrefix.parse(p) for p in config.prefixes)
        self.dl: UrlPrefix | None = None
        self.api: UrlPrefix | None = None
        self.learned = False

    @property
    def name(self) -> str:
        return self.config.name

    def learn(self, registry_json: dict[str, object]) -> list[str]:
        """Adopt `dl` and `api` from the index's config.json; returns problems to report."""
        problems = []
        for key in ("dl", "api"):
            value = registry_json.get(key)
            if value is None:
                continue
            if not isinstance(value, str):
                problems.append(f"config.json '{key}' is not a string")
                continue
            # Cargo's dl may be a template; the prefix is everything before the first marker.
            base = value.split("{", 1)[0]
            parts = urlsplit(base)
            if parts.scheme != "https" or not parts.hostname:
                problems.append(f"config.json '{key}' = '{value}' is not https; it gets no token")
                continue
            # A dl template such as https://h/crates-{crate} is matched on its literal head.
            prefix = UrlPrefix.parse(base, directory="{" not in value)
            if key == "dl":
                self.dl = prefix
            else:
                self.api = prefix
        self.learned = True
        return problems

    def prefixes(self) -> list[UrlPrefix]:
        found = [self.index, *self.extra]
        found += [p for p in (self.dl, self.api) if p is not None]
        return found

    def origins(self) -> set[tuple[str, int]]:
        return {p.origin for p in self.prefixes()}

    def match(self, host: str, port: int, path: str, method: str) -> Route | None:
        in_index = self.index.covers(host, port, path)
        others = (p for p in (self.dl, self.api, *self.extra) if p is not None)
        if not (in_index or any(p.covers(host, port, path) for p in others)):
            return None
        return Route(self, classify_operation(path, method), is_index=in_index)


class Router:
    """All registries; answers 'which registry, if any, owns this https request?'."""

    def __init__(self, registries: list[RegistryConfig]) -> None:
        self.registries = [RegistryRoutes(r) for r in registries]

    def match(self, scheme: str, host: str, port: int, path_with_query: str, method: str) -> Route | None:
        if scheme != "https":
            return None
        path = path_with_query.split("?", 1)[0]
        if not is_plain_path(path):
            return None
        for registry in self.registries:
            found = registry.match(host, port, path, method)
            if found:
                return found
        return None

    def intercepts(self, host: str, port: int) -> bool:
        """Whether TLS to this origin is opened at all; everything else is tunnelled."""
        host = host.lower()
        return any((host, port) in r.origins() for r in self.registries)
