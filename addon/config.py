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

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cargo_vouch import paths
from cargo_vouch.direct_https import verified_context
from cargo_vouch.errors import VouchError


class ConfigError(VouchError):
    """One line that names the file, the key and what is wrong."""


#: A registry name as Cargo allows it (and as it appears in CARGO_REGISTRIES_<NAME>_TOKEN).
REGISTRY_NAME = re.compile(r"[A-Za-z0-9_-]+")
_UNSAFE_ESCAPE = re.compile(r"%(2e|2f|5c|00)", re.IGNORECASE)

DEFAULT_PROVIDER: tuple[str, ...] = ("vouch", "credential", "cargo", "--")
DEFAULT_PROVIDER_TIMEOUT = 30.0
DEFAULT_TOUCH_TIMEOUT = 30.0
#: Larger than crates.io's 10 MB: a private registry sets its own limit, this one only
#: bounds what the proxy spools to disk.
DEFAULT_MAX_PUBLISH_SIZE = 64 * 1024 * 1024
_SIZE_UNITS = {"": 1, "k": 1024, "kib": 1024, "m": 1024**2, "mib": 1024**2, "g": 1024**3, "gib": 1024**3}

_PROXY_KEYS = {"listen", "upstream-ca"}
_REGISTRY_KEYS = {
    "index",
    "credential-provider",
    "token-prefix",
    "prefixes",
    "allow-publish",
    "touch",
    "touch-timeout",
    "max-publish-size",
    "provider-timeout",
    "client-credentials",
}
_CLIENT_CREDENTIALS_KEYS = {
    "issuer",
    "client-id",
    "client-secret-env",
    "private-key",
    "key-id",
    "audience",
    "scope",
}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class ListenAddress:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """As Cargo's `http.proxy` names it."""
        return f"http://{self}"


@dataclass(frozen=True)
class ClientCredentialsConfig:
    """`[registries.NAME.client-credentials]`: the OAuth client-credentials grant, for CI.

    Holds where the secret is, never the secret: the client secret stays in the
    environment until the moment it is sent, and the private key in its file.
    Exactly one of `client_secret_env` (client_secret_basic) and `private_key`
    (private_key_jwt, RFC 7523) is set.
    """

    issuer: str
    client_id: str
    audience: str
    client_secret_env: str | None = None
    private_key: Path | None = None
    key_id: str | None = None
    scope: str | None = None


@dataclass(frozen=True)
class RegistryConfig:
    name: str
    index: str
    credential_provider: tuple[str, ...] = DEFAULT_PROVIDER
    token_prefix: str = ""
    prefixes: tuple[str, ...] = ()
    allow_publish: bool = False
    touch: bool = False
    touch_timeout: float = DEFAULT_TOUCH_TIMEOUT
    max_publish_size: int = DEFAULT_MAX_PUBLISH_SIZE
    provider_timeout: float = DEFAULT_PROVIDER_TIMEOUT
    #: Set when the registry's tokens come from the client-credentials grant instead of
    #: `credential_provider` (which then keeps its unused default).
    client_credentials: ClientCredentialsConfig | None = None

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

    @property
    def secret_variables(self) -> frozenset[str]:
        """Environment variables that hold a secret the proxy reads (the CI client secrets):
        no child process and no command under `run` gets them."""
        return frozenset(
            r.client_credentials.client_secret_env
            for r in self.registries.values()
            if r.client_credentials is not None and r.client_credentials.client_secret_env is not None
        )


def registry_hosts(config: VouchConfig) -> set[str]:
    """The hosts the dedicated CA may sign for: every configured registry URL's host."""
    hosts: set[str] = set()
    for registry in config.registries.values():
        for url in (registry.index_http_url, *registry.prefixes):
            hosts.add((urlsplit(url).hostname or "").lower())
    return hosts


def ascii_number(text: str) -> int | None:
    """`text` as a number when it is ASCII digits only, else None. (`str.isdigit` also
    accepts '²' and other digits that `int` refuses: a port or length written so must be
    refused, not crash the code that checks it.)"""
    return int(text) if text.isascii() and text.isdigit() else None


def parse_listen(value: str) -> ListenAddress:
    """`HOST:PORT` on loopback only: the proxy hands out tokens to whoever connects."""
    host, sep, port_text = value.rpartition(":")
    port = ascii_number(port_text)
    if not sep or port is None:
        raise ValueError(f"'{value}' is not HOST:PORT")
    host = host.strip("[]")
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
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        return f"'{url}' is not a valid URL ({exc})"
    if parts.scheme != "https":
        return f"'{url}' is not an https URL (tokens only travel over verified TLS)"
    if not parts.hostname:
        return f"'{url}' has no host"
    if any(ch.isspace() or not ch.isprintable() for ch in parts.hostname):
        return f"'{url}' has a space or control character in its host name"
    if not parts.hostname.isascii():
        try:
            ascii_form = parts.hostname.encode("idna").decode("ascii")
        except UnicodeError:
            return f"'{url}' has a host name that is neither ASCII nor a valid international domain name"
        return f"'{url}' has a non-ASCII host name; write it in its ASCII form, {ascii_form}"
    if parts.username or parts.password:
        return f"'{url}' carries credentials in the URL"
    if parts.query or parts.fragment:
        return f"'{url}' has a query or fragment"
    try:
        port = parts.port  # raises for a port that is not a number in range
    except ValueError:
        return f"'{url}' has an invalid port"
    if port == 0:
        return f"'{url}' has an invalid port (0)"
    if not is_plain_path(parts.path or "/"):
        return f"'{url}' has dot segments or encoded slashes; write the path plainly"
    return None


def is_plain_path(path: str) -> bool:
    """No dot segments, no encoded dot/slash/backslash/NUL, no backslash.

    Such paths are how a request that looks like it sits under a prefix is made to land
    somewhere else on the server; Cargo, git and curl never send them.
    """
    if "\\" in path or "%" in path or "/." in path or path.startswith("."):
        if "\\" in path or _UNSAFE_ESCAPE.search(path):
            return False
        return all(segment not in (".", "..") for segment in unquote(path).split("/"))
    return True  # no backslash, no escape, no segment starting with a dot


def is_header_safe(value: str) -> bool:
    """Printable ASCII only: what may stand in an Authorization header without smuggling
    a line break (and with it another header) into the request."""
    return all(" " <= ch <= "~" for ch in value)


def parse_size(value: object) -> int:
    """Bytes, as a whole number or a string such as "64M" or "1GiB"."""
    if isinstance(value, int) and not isinstance(value, bool):
        number, unit = value, ""
    elif isinstance(value, str) and (found := re.fullmatch(r"\s*(\d+)\s*([A-Za-z]*)\s*", value)):
        number, unit = int(found.group(1)), found.group(2).lower()
    else:
        raise ValueError('must be a number of bytes or a size such as "64M"')
    if unit not in _SIZE_UNITS:
        raise ValueError(f"unknown unit '{unit}' (use K, M or G)")
    if number <= 0:
        raise ValueError("must be larger than 0")
    return number * _SIZE_UNITS[unit]


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
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid UTF-8 at byte {exc.start}; TOML files must be UTF-8") from None
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
            verified_context(upstream_ca)
        except ssl.SSLError:
            raise fail("proxy.upstream-ca", f"{upstream_ca}: not a PEM bundle of CA certificates") from None

    registries_table = data.get("registries", {})
    if not isinstance(registries_table, dict):
        raise fail("registries", "must be a table of [registries.NAME]")
    registries: dict[str, RegistryConfig] = {}
    for name, table in registries_table.items():
        if not isinstance(table, dict):
            raise fail(f"registries.{name}", "must be a table")
        registries[name] = _parse_registry(name, table, fail, path.parent)
    for registry in registries.values():
        for key, urls in (("index", (registry.index_http_url,)), ("prefixes", registry.prefixes)):
            for url in urls:
                for other in registries.values():
                    if other is not registry and urls_overlap(url, other.index_http_url):
                        raise fail(
                            f"registries.{registry.name}.{key}",
                            f"{url} overlaps the index of registry '{other.name}' ({other.index_http_url}): one "
                            "registry's requests would carry the other's token; give each registry its own URL",
                        )
    return VouchConfig(path=path, proxy=ProxyConfig(listen, upstream_ca), registries=registries)


def urls_overlap(a: str, b: str) -> bool:
    """Whether one https URL prefix covers (a part of) the other: same host and port, and
    one path starts with the other."""
    first, second = urlsplit(a), urlsplit(b)
    if ((first.hostname or "").lower(), first.port or 443) != ((second.hostname or "").lower(), second.port or 443):
        return False
    return first.path.startswith(second.path) or second.path.startswith(first.path)


def _parse_registry(name: str, table: dict[str, object], fail, base: Path) -> RegistryConfig:  # type: ignore[no-untyped-def]
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
    if not isinstance(token_prefix, str) or not is_header_safe(token_prefix) or token_prefix != token_prefix.lstrip():
        raise fail(f"{where}.token-prefix", "must be printable ASCII not starting with a space, e.g. \"Bearer \"")

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
    seconds: dict[str, float] = {}
    for key, default in (("provider-timeout", DEFAULT_PROVIDER_TIMEOUT), ("touch-timeout", DEFAULT_TOUCH_TIMEOUT)):
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
            raise fail(f"{where}.{key}", "must be a positive, finite number of seconds")
        seconds[key] = float(value)

    try:
        max_publish_size = parse_size(table.get("max-publish-size", DEFAULT_MAX_PUBLISH_SIZE))
    except ValueError as exc:
        raise fail(f"{where}.max-publish-size", str(exc)) from None

    client_credentials: ClientCredentialsConfig | None = None
    if "client-credentials" in table:
        if "credential-provider" in table:
            raise fail(
                f"{where}.client-credentials",
                "cannot be combined with credential-provider (a registry has one provider); remove one of them",
            )
        client_credentials = _parse_client_credentials(
            f"{where}.client-credentials", table["client-credentials"], index.removeprefix("sparse+"), fail, base
        )

    return RegistryConfig(
        name=name,
        index=index,
        credential_provider=provider,
        token_prefix=token_prefix,
        prefixes=tuple(prefixes),
        allow_publish=flags["allow-publish"],
        touch=flags["touch"],
        touch_timeout=seconds["touch-timeout"],
        max_publish_size=max_publish_size,
        provider_timeout=seconds["provider-timeout"],
        client_credentials=client_credentials,
    )


def _parse_client_credentials(  # type: ignore[no-untyped-def]
    where: str, table: object, default_audience: str, fail, base: Path
) -> ClientCredentialsConfig:
    if not isinstance(table, dict):
        raise fail(where, "must be a table with issuer, client-id and client-secret-env or private-key")
    for key in table:
        if key not in _CLIENT_CREDENTIALS_KEYS:
            raise fail(f"{where}.{key}", f"unknown key (known: {', '.join(sorted(_CLIENT_CREDENTIALS_KEYS))})")

    def text(key: str, what: str, required: bool = False) -> str | None:
        value = table.get(key)
        if value is None:
            if required:
                raise fail(f"{where}.{key}", f"missing; set it to {what}")
            return None
        # Printable ASCII: each of these ends up in an HTTP header or a form body.
        if not isinstance(value, str) or not value or not is_header_safe(value):
            raise fail(f"{where}.{key}", f"must be a non-empty string of printable ASCII: {what}")
        return value

    issuer = text("issuer", "the Vouch server's https URL, e.g. \"https://vouch.corp.example\"", required=True)
    assert issuer is not None
    problem = https_url_problem(issuer)
    if problem:
        raise fail(f"{where}.issuer", problem)
    client_id = text("client-id", "the OAuth client id registered for this CI", required=True)
    assert client_id is not None
    audience = text("audience", "what the token is for (default: the index URL)") or default_audience
    scope = text("scope", "space-separated OAuth scopes")
    key_id = text("key-id", "the `kid` the server knows the client's public key by")

    secret_env = text("client-secret-env", "the name of the environment variable that holds the client secret")
    if secret_env is not None and not _ENV_NAME.fullmatch(secret_env):
        raise fail(f"{where}.client-secret-env", f"'{secret_env}' is not an environment variable name")
    key_value = text("private-key", "the path of a PEM private key (EC P-256 or RSA)")
    if (secret_env is None) == (key_value is None):
        raise fail(
            where,
            "set exactly one of client-secret-env (client_secret_basic) and private-key (private_key_jwt)",
        )
    private_key: Path | None = None
    if key_value is not None:
        private_key = (base / Path(key_value).expanduser()).resolve()
        problem = private_key_problem(private_key)
        if problem:
            raise fail(f"{where}.private-key", problem)
    elif key_id is not None:
        raise fail(f"{where}.key-id", "only goes with private-key; remove it or use private-key")

    return ClientCredentialsConfig(
        issuer=issuer,
        client_id=client_id,
        audience=audience,
        client_secret_env=secret_env,
        private_key=private_key,
        key_id=key_id,
        scope=scope,
    )


def load_private_key(path: Path) -> tuple[ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, str]:
    """The signing key of private_key_jwt and its JWS algorithm: ES256 for EC P-256,
    RS256 for RSA (2048 bits or more), the two every OAuth server supports.
    Raises ValueError with the reason, OSError when the file cannot be read."""
    data = path.read_bytes()
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise ValueError(f"{path}: the key is encrypted; a CI key has no passphrase (protect the file instead)") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError(f"{path}: not a PEM private key") from None
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return key, "ES256"
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size >= 2048:
        return key, "RS256"
    raise ValueError(f"{path}: neither an EC P-256 key nor an RSA key of 2048 bits or more")


def private_key_problem(path: Path) -> str | None:
    if not path.is_file():
        return f"{path}: no such file"
    try:
        load_private_key(path)
    except OSError as exc:
        return f"{path}: cannot read: {exc.strerror or exc}"
    except ValueError as exc:
        return str(exc)
    return None
