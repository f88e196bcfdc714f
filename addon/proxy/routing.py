"""Which requests belong to which registry, and what Cargo operation each one is.

A token is a bearer credential: whoever receives it can use it. So a request earns one
only when its scheme, host, port and path lie under a prefix the registry owns, compared
on the URL as it goes on the wire, with anything that could make a server resolve the
path elsewhere (dot segments, encoded slashes) treated as foreign.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, NamedTuple
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
    def parse(cls, url: str) -> UrlPrefix:
        """A configured URL (already checked by the config), as a directory prefix."""
        parts = urlsplit(url)
        assert parts.scheme == "https" and parts.hostname, url
        path = parts.path or "/"
        if not path.endswith("/"):
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
#: Every read is the same operation: one value, not one per request.
READ = Read()
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
        return READ
    if method == "POST" and decoded.lower().endswith("/git-upload-pack"):
        return READ  # git's fetch: the refs it wants, in a POST body
    return Unrecognised()


class Route(NamedTuple):
    """A request that belongs to a registry: which one, and what it asks of it. (A tuple:
    one is made for every registry request.)"""

    registry: RegistryRoutes
    operation: RequestOperation
    is_index: bool

    @property
    def is_write(self) -> bool:
        return not isinstance(self.operation, Read)


def learned_prefix(value: str) -> UrlPrefix | str:
    """The prefix a `dl` or `api` URL from config.json covers, or why it covers none.

    A `dl` may be a template (`{crate}`, `{version}`, `{prefix}`, `{lowerprefix}`,
    `{sha256-checksum}`, anywhere, a query string included): the prefix is its literal
    path up to the last `/` before the first marker. Without a marker Cargo appends
    `/{crate}/{version}/download`, so the whole URL is a directory.
    """
    head = value.split("{", 1)[0]
    templated = head != value
    parts = urlsplit(head)
    if parts.scheme != "https" or not parts.hostname:
        return "is not an https URL"
    if templated and "/" not in head.removeprefix("https://"):
        return "holds a marker before its path begins"
    if parts.username is not None or parts.password is not None:
        return "carries credentials in the URL"
    try:
        _ = parts.port
    except ValueError:
        return "has an invalid port"
    path = parts.path or "/"
    if templated or parts.query:
        path = path[: path.rfind("/") + 1]
    if not path.endswith("/"):
        path += "/"
    if not is_plain_path(path):
        return "has dot segments or encoded slashes in its path"
    if ";" in path or "//" in path:
        # Servers that drop ;params read /;/ as /: a root in disguise.
        return "has ;params or an empty segment in its path"
    prefix = UrlPrefix(parts.hostname.lower(), parts.port or 443, path)
    if prefix.path == "/":
        return "would cover every path of its host"
    return prefix


def overlap(a: UrlPrefix, b: UrlPrefix) -> bool:
    """Whether either prefix covers (a part of) the other."""
    return a.covers(b.host, b.port, b.path) or b.covers(a.host, a.port, a.path)


class RegistryRoutes:
    """The URL prefixes of one registry: configured ones plus `dl`/`api` from config.json.

    Only the configured hosts (the index's and those of `prefixes`) are ever opened or get
    the token: a `dl` or `api` that config.json places anywhere else is not adopted.
    """

    def __init__(self, config: RegistryConfig) -> None:
        self.config = config
        self.index = UrlPrefix.parse(config.index_http_url)
        self.extra = tuple(UrlPrefix.parse(p) for p in config.prefixes)
        self.dl: UrlPrefix | None = None
        self.api: UrlPrefix | None = None
        self.learned = False
        #: Other registries' index prefixes, which a learned prefix must not cover.
        self.foreign_indexes: tuple[UrlPrefix, ...] = ()

    @property
    def name(self) -> str:
        return self.config.name

    def configured_origins(self) -> set[tuple[str, int]]:
        return {self.index.origin, *(p.origin for p in self.extra)}

    def learn(self, registry_json: dict[str, object]) -> list[str]:
        """Adopt `dl` and `api` from the index's config.json; returns problems to report."""
        problems = []
        learned: dict[str, UrlPrefix | None] = {"dl": None, "api": None}
        for key in learned:
            value = registry_json.get(key)
            if value is None:
                continue
            if not isinstance(value, str):
                problems.append(f"config.json '{key}' is not a string; it gets no token")
                continue
            prefix = learned_prefix(value)
            if isinstance(prefix, str):
                problems.append(f"config.json '{key}' = '{value}' {prefix}; it gets no token")
            elif prefix.origin not in self.configured_origins():
                problems.append(
                    f"config.json '{key}' = '{value}' is on {prefix.host}, which is not configured: it gets no token "
                    f'and TLS to it is tunnelled; add "https://{prefix.host}:{prefix.port}/" to prefixes in '
                    f"[registries.{self.name}] (or run 'cargo vouch setup --registry {self.name}') if it is the registry's"
                )
            elif any(overlap(prefix, index) for index in self.foreign_indexes):
                problems.append(f"config.json '{key}' = '{value}' overlaps another registry's index; it gets no token")
            else:
                learned[key] = prefix
        self.dl, self.api = learned["dl"], learned["api"]
        self.learned = True
        return problems

    def prefixes(self) -> list[UrlPrefix]:
        found = [self.index, *self.extra]
        found += [p for p in (self.dl, self.api) if p is not None]
        return found

    def origins(self) -> set[tuple[str, int]]:
        """Where this registry's requests go: its configured hosts only."""
        return self.configured_origins()

    def match(self, host: str, port: int, path: str, method: str) -> Route | None:
        in_index = self.index.covers(host, port, path)
        others = (p for p in (self.dl, self.api, *self.extra) if p is not None)
        if not (in_index or any(p.covers(host, port, path) for p in others)):
            return None
        operation = classify_operation(path, method)
        if method == "POST" and operation is READ and not (in_index and not self.config.is_sparse):
            operation = Unrecognised()  # git's fetch POSTs only to a git index
        return Route(self, operation, is_index=in_index)


class FollowUps:
    """Redirects an authenticated registry answer made to its own origin, remembered so that
    the follow-up request to exactly that URL gets the token too, as curl keeps
    `Authorization` on a same-origin redirect (a download answered with 302 to another
    path on the registry's host). Bounded in count and time, and each one used once."""

    MAX = 256
    TTL_SECONDS = 60.0

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._pending: OrderedDict[tuple[str, int, str], tuple[RegistryRoutes, float]] = OrderedDict()

    def remember(self, registry: RegistryRoutes, host: str, port: int, path: str) -> None:
        key = (host.lower(), port, path)
        self._pending.pop(key, None)
        self._pending[key] = (registry, self._clock() + self.TTL_SECONDS)
        while len(self._pending) > self.MAX:
            self._pending.popitem(last=False)

    def take(self, host: str, port: int, path: str) -> RegistryRoutes | None:
        """The registry whose redirect pointed here, once; None if none did (or long ago)."""
        found = self._pending.pop((host.lower(), port, path), None)
        if found is None or found[1] < self._clock():
            return None
        return found[0]

    def __len__(self) -> int:
        return len(self._pending)


class Router:
    """All registries; answers 'which registry, if any, owns this https request?'."""

    def __init__(self, registries: list[RegistryConfig]) -> None:
        self.registries = [RegistryRoutes(r) for r in registries]
        for registry in self.registries:
            registry.foreign_indexes = tuple(r.index for r in self.registries if r is not registry)
        #: Configured origins never change for a config: looked up on every request.
        self._origins = frozenset(origin for r in self.registries for origin in r.configured_origins())

    def match(self, scheme: str, host: str, port: int, path_with_query: str, method: str) -> Route | None:
        if scheme != "https":
            return None
        path = path_with_query.partition("?")[0]
        if not is_plain_path(path):  # encoded slashes, dots, backslashes: never a registry's
            return None
        for registry in self.registries:
            found = registry.match(host, port, path, method)
            if found:
                return found
        return None

    def intercepts(self, host: str, port: int) -> bool:
        """Whether TLS to this origin is opened at all; everything else is tunnelled."""
        return (host.lower(), port) in self._origins
