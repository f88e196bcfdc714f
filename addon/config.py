"""The cargo-vouch config file: parsed once, validated fully, reported in one line.

A registry config decides where a bearer token may go, so anything the file says that
we do not understand stops start-up instead of being ignored.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import shlex
import ssl
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from addon import paths


class ConfigError(Exception):
    """One line that names the file, the key and what is wrong."""


REGISTRY_NAME = re.compile(r"[A-Za-z0-9_-]+")
_UNSAFE_ESCAPE = re.compile(r"%(2e|2f|5c|00)", re.IGNORECASE)

DEFAULT_PROVIDER: tuple[str, ...] = ("vouch", "credential", "cargo", "--")
DEFAULT_PROVIDER_TIMEOUT = 30.0

_PROXY_KEYS = {"listen", "upstream-ca"}
_REGISTRY_KEYS = {
    "index",
    "credential-provider",
    "token-prefix",
    "prefixes",
    "allow-publish",
    "touch",
    "provider-timeout",
}


@dataclass(frozen=True)
class ListenAddress:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class RegistryConfig:
    name: str
    index: str
    credential_provider: tuple[str, ...] = DEFAULT_PROVIDER
    token_prefix: str = ""
    prefixes: tuple[str, ...] = ()
    allow_publish: bool = False
    provider_timeout: float = DEFAULT_PROVIDER_TIMEOUT

    @property
    def is_sparse(self) -> bool:
        return self.index.startswith("sparse+")

    @property
    def index_http_url(self) -> str:
        """The index URL as it appears on the wire (without Cargo's `sparse+` marker)."""
        return self.index.removeprefix("sparse+")


@dataclass(frozen=True)
class ProxyConfig:
    listen: ListenAddress = field(default_factory=lambda: parse_listen(paths.DEFAULT_LISTEN))
    upstream_ca: Path | None = None


@dataclass(frozen=True)
class VouchConfig:
    path: Path | None
    proxy: ProxyConfig
    registries: dict[str, RegistryConfig]


def registry_hosts(config: VouchConfig) -> set[str]:
    """The hosts the dedicated CA may sign for: every configured registry URL's host."""
    hosts: set[str] = set()
    for registry in config.registries.values():
        for url in (registry.index_http_url, *registry.prefixes):
            hosts.add((urlsplit(url).hostname or "").lower())
    return hosts


def parse_listen(value: str) -> ListenAddress:
    """`HOST:PORT` on loopback only: the proxy hands out tokens to whoever connects."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError(f"'{value}' is not HOST:PORT")
    host = host.strip("[]")
    port = int(port_text)
    if not 0 < port <= 65535:
        raise ValueError(f"port {port} is out of range (1-65535)")
    if not is_loopback(host):
        raise ValueError(f"'{host}' is not a loopback address; use 127.0.0.1 or ::1")
    return ListenAddress(host, port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def https_url_problem(url: str) -> str | None:
    """Why `url` cannot carry a token, or None when it can."""
    parts = urlsplit(url)
    if parts.scheme != "https":
        return f"'{url}' is not an https URL (tokens only travel over verified TLS)"
    if not parts.hostname:
        return f"'{url}' has no host"
    if parts.username or parts.password:
        return f"'{url}' carries credentials in the URL"
    if parts.query or parts.fragment:
        return f"'{url}' has a query or fragment"
    try:
        _ = parts.port  # raises for a port that is not a number in range
    except ValueError:
        return f"'{url}' has an invalid port"
    if not is_plain_path(parts.path or "/"):
        return f"'{url}' has dot segments or encoded slashes; write the path plainly"
    return None


def is_plain_path(path: str) -> bool:
    """No dot segments, no encoded dot/slash/backslash/NUL, no backslash.

    Such paths are how a request that looks like it sits under a prefix is made to land
    somewhere else on the server; Cargo, git and curl never send them.
    """
    if "\\" in path or _UNSAFE_ESCAPE.search(path):
        return False
    return all(segment not in (".", "..") for segment in unquote(path).split("/"))


def is_header_safe(value: str) -> bool:
    """Printable ASCII only: what may stand in an Authorization header without smuggling
    a line break (and with it another header) into the request."""
    return all(" " <= ch <= "~" for ch in value)


def parse_provider(value: object) -> tuple[str, ...]:
    """Cargo's own syntax: an array of strings, or one string split on whitespace."""
    if isinstance(value, str):
        argv = tuple(shlex.split(value))
    elif isinstance(value, list) and all(isinstance(item, str) for item in value):
        argv = tuple(value)
    else:
        raise ValueError("must be an array of strings or a string")
    if not argv:
        raise ValueError("is empty")
    if argv[0].startswith("cargo:") and argv[0] not in ("cargo:token", "cargo:token-from-stdout"):
        raise ValueError(
            f"'{argv[0]}' is not supported; use an external provider, cargo:token "
            "or cargo:token-from-stdout"
        )
    if argv[0] == "cargo:token-from-stdout" and len(argv) < 2:
        raise ValueError("cargo:token-from-stdout needs a command after it")
    return argv


def load_config(cli_value: str | os.PathLike[str] | None = None) -> VouchConfig:
    path, explicit = paths.config_path(cli_value)
    if not path.exists():
        if explicit:
            raise ConfigError(f"{path}: no such file (named by --config or CARGO_VOUCH_CONFIG)")
        return VouchConfig(path=None, proxy=ProxyConfig(), registries={})
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_config(data, path)


def parse_config(data: dict[str, object], path: Path) -> VouchConfig:
    def fail(key: str, problem: str) -> ConfigError:
        return ConfigError(f"{path}: {key}: {problem}")

    unknown = set(data) - {"proxy", "registries"}
    if unknown:
        key = sorted(unknown)[0]
        raise fail(key, "unknown key (expected [proxy] and [registries.NAME])")

    proxy_table = data.get("proxy", {})
    if not isinstance(proxy_table, dict):
        raise fail("proxy", "must be a table")
    for key in proxy_table:
        if key not in _PROXY_KEYS:
            raise fail(f"proxy.{key}", f"unknown key (known: {', '.join(sorted(_PROXY_KEYS))})")
    listen_value = proxy_table.get("listen", paths.DEFAULT_LISTEN)
    if not isinstance(listen_value, str):
        raise fail("proxy.listen", "must be a string HOST:PORT")
    try:
        listen = parse_listen(listen_value)
    except ValueError as exc:
        raise fail("proxy.listen", str(exc)) from None
    upstream_ca: Path | None = None
    if "upstream-ca" in proxy_table:
        raw_ca = proxy_table["upstream-ca"]
        if not isinstance(raw_ca, str) or not raw_ca:
            raise fail("proxy.upstream-ca", "must be a path to a PEM bundle")
        upstream_ca = (path.parent / Path(raw_ca).expanduser()).resolve()
        if not upstream_ca.is_file():
            raise fail("proxy.upstream-ca", f"{upstream_ca}: no such file")
        try:
            ssl.create_default_context().load_verify_locations(cafile=str(upstream_ca))
        except ssl.SSLError:
            raise fail("proxy.upstream-ca", f"{upstream_ca}: not a PEM bundle of CA certificates") from None

    registries_table = data.get("registries", {})
    if not isinstance(registries_table, dict):
        raise fail("registries", "must be a table of [registries.NAME]")
    registries: dict[str, RegistryConfig] = {}
    for name, table in registries_table.items():
        if not isinstance(table, dict):
            raise fail(f"registries.{name}", "must be a table")
        registries[name] = _parse_registry(name, table, fail)
    return VouchConfig(path=path, proxy=ProxyConfig(listen, upstream_ca), registries=registries)


def _parse_registry(name: str, table: dict[str, object], fail) -> RegistryConfig:  # type: ignore[no-untyped-def]
    where = f"registries.{name}"
    if not REGISTRY_NAME.fullmatch(name):
        raise fail(where, "a registry name is letters, digits, '-' and '_' (as in Cargo)")
    for key in table:
        if key not in _REGISTRY_KEYS:
            raise fail(f"{where}.{key}", f"unknown key (known: {', '.join(sorted(_REGISTRY_KEYS))})")
    index = table.get("index")
    if not isinstance(index, str):
        raise fail(f"{where}.index", "missing; set it to the index URL from Cargo's [registries] table")
    problem = https_url_problem(index.removeprefix("sparse+"))
    if problem:
        raise fail(f"{where}.index", problem)
    if index.startswith("sparse+") and not index.endswith("/"):
        raise fail(f"{where}.index", f"'{index}': a sparse index URL must end with '/'")

    try:
        provider = parse_provider(table.get("credential-provider", list(DEFAULT_PROVIDER)))
    except ValueError as exc:
        raise fail(f"{where}.credential-provider", str(exc)) from None

    token_prefix = table.get("token-prefix", "")
    if not isinstance(token_prefix, str) or not is_header_safe(token_prefix):
        raise fail(f"{where}.token-prefix", "must be a string of printable ASCII, e.g. \"Bearer \"")

    prefixes = table.get("prefixes", [])
    if not isinstance(prefixes, list) or not all(isinstance(p, str) for p in prefixes):
        raise fail(f"{where}.prefixes", "must be an array of https URLs")
    for prefix in prefixes:
        problem = https_url_problem(prefix)
        if problem:
            raise fail(f"{where}.prefixes", problem)

    flags: dict[str, bool] = {}
    for key in ("allow-publish", "touch"):
        value = table.get(key, False)
        if not isinstance(value, bool):
            raise fail(f"{where}.{key}", "must be true or false")
        flags[key] = value
    if flags["touch"]:
        raise fail(
            f"{where}.touch",
            "FIDO2 touch for writes is not available in this version; remove the key or set it false",
        )

    timeout = table.get("provider-timeout", DEFAULT_PROVIDER_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < math.inf:
        raise fail(f"{where}.provider-timeout", "must be a positive, finite number of seconds")

    return RegistryConfig(
        name=name,
        index=index,
        credential_provider=provider,
        token_prefix=token_prefix,
        prefixes=tuple(prefixes),
        allow_publish=flags["allow-publish"],
        provider_timeout=float(timeout),
    )
