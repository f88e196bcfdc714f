"""Environment variables that would defeat the setup: what `setup` warns about, `doctor`
fails on, and `run` clears for its command (curl's NO_PROXY rules)."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from cargo_vouch import cargo_config


@dataclass(frozen=True)
class EnvOverride:
    """An environment variable that overrides what setup writes, and what to do about it.

    `setup` prints it as a warning (a note when not `blocking`); `doctor` fails on it unless
    it is not blocking. The variable's value is never part of the message: it may hold a
    token or a proxy password.
    """

    variable: str
    problem: str
    fix: str
    blocking: bool = True

    @property
    def line(self) -> str:
        """How `setup` prints it."""
        return f"{'warning' if self.blocking else 'note'}: {self.problem}; {self.fix}"


def env_overrides(registry: str, index: str, proxy: str, ca: str, git_cli: bool) -> list[EnvOverride]:
    """Variables that override what setup writes for `registry`, each with what to do about it."""
    env = os.environ
    out: list[EnvOverride] = []
    if env.get("CARGO_HTTP_PROXY", proxy) != proxy:
        out.append(
            EnvOverride(
                "CARGO_HTTP_PROXY",
                "CARGO_HTTP_PROXY is set and overrides http.proxy",
                f"unset it (or set it to {proxy})",
            )
        )
    if env.get("CARGO_HTTP_CAINFO", ca) != ca:
        out.append(
            EnvOverride(
                "CARGO_HTTP_CAINFO",
                "CARGO_HTTP_CAINFO is set and overrides http.cainfo",
                f"unset it (or set it to {ca})",
            )
        )
    host = urlsplit(index.removeprefix("sparse+")).hostname or ""
    for var in ("NO_PROXY", "no_proxy"):
        if host and no_proxy_covers(env.get(var, ""), host):
            out.append(
                EnvOverride(
                    var, f"{var} covers {host}, so Cargo and git bypass the proxy", f"remove that entry from {var}"
                )
            )
    if git_cli and env.get("GIT_SSL_CAINFO"):
        out.append(
            EnvOverride(
                "GIT_SSL_CAINFO",
                "GIT_SSL_CAINFO is set and overrides the sslCAInfo setup wrote for git",
                "unset it where you run cargo",
            )
        )
    token_var = cargo_config.env_name(f"registries.{registry}.token")
    for var in (token_var, "CARGO_REGISTRY_TOKEN"):
        if env.get(var):
            out.append(
                EnvOverride(
                    var,
                    f"{var} is set but not needed: the proxy sends a fresh token for "
                    f"'{registry}' and replaces any static one",
                    "unset it",
                    blocking=False,
                )
            )
    return out


def no_proxy_covers(value: str, host: str) -> bool:
    """Whether a NO_PROXY list (curl's rules: `*`, domains, leading dots, IPs, CIDR) covers host."""
    host = host.lower().rstrip(".").strip("[]")
    for raw in value.split(","):
        item = raw.strip().lower()
        if not item:
            continue
        if item == "*":
            return True
        if item.count(":") == 1:  # host:port
            item = item.split(":")[0]
        item = item.lstrip("*").lstrip(".").strip("[]")
        if host == item or host.endswith("." + item):
            return True
        try:
            if ipaddress.ip_address(host) in ipaddress.ip_network(item, strict=False):
                return True
        except ValueError:
            pass
    return False
