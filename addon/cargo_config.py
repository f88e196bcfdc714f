"""Read Cargo's own configuration the way Cargo does.

`setup` needs the registry's index URL and whether Cargo fetches git indexes with the git CLI;
`doctor` asks the same questions. Both must see what Cargo sees, so this module follows Cargo's
rules: environment variables (`CARGO_` + the key upper-cased, `.` and `-` as `_`) win over
files; files are `.cargo/config` or `.cargo/config.toml` in the current directory and each
parent, deeper first, then `$CARGO_HOME`'s, and a value from a deeper file wins.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import tomlkit
import tomlkit.exceptions
from tomlkit.toml_document import TOMLDocument

from cargo_vouch.errors import VouchError


class CargoConfigError(VouchError):
    """A Cargo config file or variable Cargo itself would reject; the message is one line."""


@dataclass(frozen=True)
class Found:
    """A config value and where it came from (a file path or `env NAME`), for messages."""

    value: Any
    source: str


def cargo_home() -> Path:
    """`$CARGO_HOME`, else `~/.cargo`, as Cargo resolves it."""
    explicit = os.environ.get("CARGO_HOME")
    return Path(explicit) if explicit else Path.home() / ".cargo"


def env_name(key: str) -> str:
    """The environment variable Cargo reads for a dotted config key.

    `registries.my-reg.index` -> `CARGO_REGISTRIES_MY_REG_INDEX`.
    """
    return "CARGO_" + key.upper().replace(".", "_").replace("-", "_")


def config_file_in(directory: Path) -> Path | None:
    """The config file Cargo reads in a `.cargo` directory (or `$CARGO_HOME`), if any.

    When both exist Cargo uses the extension-less `config` (and warns), so editing
    `config.toml` next to it would have no effect.
    """
    legacy = directory / "config"
    if legacy.is_file():
        return legacy
    modern = directory / "config.toml"
    return modern if modern.is_file() else None


def config_files(cwd: Path) -> list[Path]:
    """Cargo's config files for a build started in `cwd`, highest priority first."""
    found: list[Path] = []
    seen: set[Path] = set()
    start = cwd.resolve()
    for directory in (start, *start.parents):
        path = config_file_in(directory / ".cargo")
        if path is not None:
            found.append(path)
            seen.add(path.resolve())
    home_file = config_file_in(cargo_home())
    if home_file is not None and home_file.resolve() not in seen:
        found.append(home_file)
    return found


def parse_toml(text: str, path: Path) -> TOMLDocument:
    """Parse TOML, turning tomlkit's error into one line that names the file and line."""
    try:
        return tomlkit.parse(text)
    except tomlkit.exceptions.ParseError as err:
        raise CargoConfigError(f"{path}: invalid TOML: {err}; fix the file and try again") from None


def read_text(path: Path) -> str | None:
    """A TOML file's text exactly as stored (line endings kept), or None when absent."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise CargoConfigError(f"{path}: cannot read: {err.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CargoConfigError(
            f"{path}: not valid UTF-8 at byte {err.start}; TOML files must be UTF-8"
        ) from None


def load(path: Path) -> TOMLDocument:
    """Parse one config file (which must exist)."""
    text = read_text(path)
    if text is None:
        raise CargoConfigError(f"{path}: no such file")
    return parse_toml(text, path)


def _dig(doc: Any, keys: list[str]) -> Any:
    """The value under a dotted key path, or None when any level is missing."""
    node = doc
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _file_values(key: str, cwd: Path) -> Iterator[Found]:
    keys = key.split(".")
    for path in config_files(cwd):
        value = _dig(load(path), keys)
        if value is not None:
            yield Found(value.unwrap() if hasattr(value, "unwrap") else value, str(path))


def get(key: str, cwd: Path) -> Found | None:
    """A config value as Cargo would resolve it from `cwd`: environment, then files.

    Values from the environment are strings, as Cargo receives them.
    """
    name = env_name(key)
    if name in os.environ:
        return Found(os.environ[name], f"env {name}")
    return file_value(key, cwd)


def file_value(key: str, cwd: Path) -> Found | None:
    """A value from Cargo's config files only, the deepest file winning, as Cargo reads them
    (doctor tells a setting in the files from an environment override)."""
    return next(_file_values(key, cwd), None)


def registry_index(name: str, cwd: Path) -> Found | None:
    """The index URL of registry `name` (`[registries.NAME] index`), or None if undefined."""
    found = get(f"registries.{name}.index", cwd)
    if found is None:
        return None
    if not isinstance(found.value, str) or not found.value:
        raise CargoConfigError(
            f"{found.source}: registries.{name}.index must be a non-empty string URL"
        )
    return found


def parse_bool(found: Found, key: str) -> bool:
    """A boolean the way Cargo accepts it: TOML true/false, or the strings "true"/"false"."""
    if isinstance(found.value, bool):
        return found.value
    if found.value in ("true", "false"):
        return found.value == "true"
    raise CargoConfigError(f"{found.source}: {key} must be true or false, not {found.value!r}")


def git_fetch_with_cli(cwd: Path) -> bool:
    """Whether Cargo fetches git indexes by running `git` (`net.git-fetch-with-cli`).

    Then git, not Cargo, talks HTTP, and Cargo's `[http]` proxy and cainfo do not apply.
    """
    found = get("net.git-fetch-with-cli", cwd)
    return False if found is None else parse_bool(found, "net.git-fetch-with-cli")


def git_index_url(index: str) -> str | None:
    """The URL git fetches for a git index over http(s); None for sparse or ssh indexes."""
    if index.startswith("sparse+"):
        return None
    return index if urlsplit(index).scheme in ("http", "https") else None


def redact_url(url: str) -> str:
    """An index or proxy URL fit to print: any user:password part is dropped."""
    prefix = "sparse+" if url.startswith("sparse+") else ""
    parts = urlsplit(url.removeprefix(prefix))
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return prefix + urlunsplit(parts._replace(netloc=netloc))
