"""Where cargo-vouch keeps state, resolved the same way by the addon and every command."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "cargo-vouch"
DEFAULT_LISTEN = "127.0.0.1:9001"


def vouch_home() -> Path:
    """`CARGO_VOUCH_HOME`, else the platform's per-user data directory."""
    explicit = os.environ.get("CARGO_VOUCH_HOME")
    return Path(explicit) if explicit else Path(platformdirs.user_data_dir(APP_NAME))


def ca_dir() -> Path:
    return vouch_home() / "ca"


def ca_cert_path() -> Path:
    """The certificate Cargo's `http.cainfo` points at (public, no key)."""
    return ca_dir() / "cargo-vouch-ca-cert.pem"


def config_path(cli_value: str | os.PathLike[str] | None = None) -> tuple[Path, bool]:
    """The config file and whether the user named it explicitly.

    Order: `--config PATH` > `$CARGO_VOUCH_CONFIG` > the per-user config directory.
    A file that was named explicitly must exist; the default one may be absent.
    """
    if cli_value:
        return Path(cli_value), True
    env_value = os.environ.get("CARGO_VOUCH_CONFIG")
    if env_value:
        return Path(env_value), True
    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml", False
