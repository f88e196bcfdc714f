"""Loads the config and sets up mitmproxy around it: where it listens, which CA it uses,
what it trusts upstream. Every setting here is a security boundary, so each is enforced,
not merely defaulted: loopback only, the dedicated CA only, upstream TLS always verified.
"""

from __future__ import annotations

import os
from pathlib import Path

from mitmproxy import ctx, exceptions
from mitmproxy.addonmanager import Loader

from cargo_vouch import paths
from cargo_vouch.ca.authority import ensure_ca, system_roots
from cargo_vouch.ca.files import write_if_changed
from cargo_vouch.config import ConfigError, VouchConfig, is_loopback, load_config, registry_hosts
from cargo_vouch.hardening import key_log_problem, protect_process
from cargo_vouch.logs import get_logger
from cargo_vouch.proxy.state import VouchState

logger = get_logger(__name__)


def write_upstream_bundle(extra_ca: Path | None) -> Path:
    """The roots the proxy trusts for registries: the system's, plus `upstream-ca`.

    mitmproxy takes a single file, and would otherwise trust certifi's roots instead of
    the system's (where a company installs its own)."""
    bundle = paths.vouch_home() / "upstream-ca-bundle.pem"
    data = system_roots().read_bytes()
    if extra_ca is not None:
        data += b"\n" + extra_ca.read_bytes()
    write_if_changed(bundle, data, mode=0o644)
    return bundle


def own_proxy_url(host: str, port: int, proxyauth: str | None) -> str:
    """How the proxy's own git fetch reaches it: with `run`'s `user:password`, if any."""
    credential = ""
    if proxyauth and ":" in proxyauth and not proxyauth.startswith(("@", "ldap")):
        credential = proxyauth + "@"
    name = f"[{host}]" if ":" in host else host
    return f"http://{credential}{name}:{port}"


class ConfigLoader:
    """`given` is a config the caller has read already (`run`, `cargo vouch proxy`): it is
    used as it is, and the file is not read again. `run` builds CMD's environment from it and
    starts CMD before the proxy is up, so a second read would let CMD (a build script) swap
    the file in between and have the proxy run a provider of its choosing, with the secrets
    `run` keeps from CMD in its environment."""

    def __init__(self, state: VouchState, given: VouchConfig | None = None) -> None:
        self.state = state
        self.given = given
        self._running = False

    def running(self) -> None:
        self._running = True
        # mitmproxy 12 binds its servers before a script's option changes reach them (11
        # does not): if they listen anywhere but the configured loopback address, rebind.
        proxyserver = ctx.master.addons.get("proxyserver")
        want_host, want_port = ctx.options.listen_host, ctx.options.listen_port
        bound = {addr[:2] for addr in proxyserver.listen_addrs()} if proxyserver else set()
        misplaced = [
            (host, port) for host, port in bound
            if not is_loopback(host) or want_port not in (0, port)  # 0: any free port will do
        ]
        if ctx.options.server and misplaced:
            logger.info(f"moving the proxy to {want_host}:{want_port}")
            ctx.options.update(server=False)
            ctx.options.update(server=True)
        listening = [(host, port) for host, port in bound if is_loopback(host)] or [(want_host, want_port)]
        # The lean master has its own credential check; mitmdump may have `--proxyauth`.
        credential = self.state.proxy_credential
        if credential is None and "proxyauth" in ctx.options:
            credential = ctx.options.proxyauth
        self.state.own_proxy = own_proxy_url(*listening[0], credential)
        self.state.learn_all()

    def load(self, loader: Loader) -> None:
        # First of all: no other process of this user may read what this one will hold.
        protect_process()
        loader.add_option(
            "vouch_config",
            str,
            "",
            "Path to the cargo-vouch config file. Default: $CARGO_VOUCH_CONFIG, "
            "then config.toml in the per-user config directory.",
        )

    def configure(self, updated: set[str]) -> None:
        try:
            self._configure(updated)
        except ConfigError as exc:
            if self._running:
                # mitmproxy rejects the option change and keeps the working config.
                raise exceptions.OptionsError(f"cargo-vouch: {exc}") from None
            # At start-up: one line, no listening socket, and mitmdump's error check exits 1.
            logger.error(str(exc))
            if ctx.options.server:
                ctx.options.update(server=False)

    def _configure(self, updated: set[str]) -> None:
        if "onboarding" in ctx.options and ctx.options.onboarding:
            # mitmdump's page at http://mitm.it/ renders template files of the user's own
            # venv at request time: a build that rewrote one would run code in the proxy.
            if self._running:
                raise ConfigError("onboarding is refused: its page renders templates a build can rewrite")
            ctx.options.update(onboarding=False)
        if "ssl_insecure" in updated and ctx.options.ssl_insecure:
            raise ConfigError(
                "ssl_insecure is refused: tokens only go to verified registries; "
                "add the registry's CA to [proxy] upstream-ca instead"
            )
        if "connection_strategy" in updated and ctx.options.connection_strategy != "eager":
            raise ConfigError(
                "connection_strategy=lazy is refused: it lets an HTTP/2 client reach an HTTP/1.1 registry, where "
                "mitmproxy writes what the client sent as the request's framing; the default, eager, is required"
            )
        if "validate_inbound_headers" in updated and not ctx.options.validate_inbound_headers:
            raise ConfigError(
                "validate_inbound_headers=false is refused: it lets requests whose framing servers read "
                "differently reach the registry's connection"
            )
        if "proxy_debug" in updated and ctx.options.proxy_debug:
            raise ConfigError("proxy_debug is refused: it logs raw request bytes, tokens included")
        if "vouch_config" in updated:
            if problem := key_log_problem():
                raise ConfigError(problem)
            self._load()
        if "listen_host" in updated and not is_loopback(ctx.options.listen_host):
            raise ConfigError(
                f"listen_host '{ctx.options.listen_host}' is not a loopback address; "
                "the proxy hands out tokens to whoever connects, so it listens on 127.0.0.1 or ::1 only"
            )
        if "confdir" in updated and self.state.config is not None:
            expected = paths.ca_dir()
            if Path(os.path.expanduser(ctx.options.confdir)).resolve() != expected.resolve():
                raise ConfigError(
                    f"confdir must stay {expected}: leaf certificates come from the dedicated CA"
                )

    def _load(self) -> None:
        config = self.given if self.given is not None else load_config(ctx.options.vouch_config or None)
        if not config.registries:
            where = config.path or paths.config_path()[0]
            logger.warning(f"no registries in {where}; every connection is tunnelled untouched")
        ca, reason = ensure_ca(paths.ca_dir(), registry_hosts(config))
        if reason:
            logger.info(f"issued the CA ({reason}): {ca.cert}")
        bundle = write_upstream_bundle(config.proxy.upstream_ca)
        self.state.apply(config, bundle, ca.cert)

        listen = config.proxy.listen
        updates: dict[str, object] = {
            "confdir": str(ca.directory),
            "upstream_cert": False,  # leaf certificates name only the requested host
            "ssl_verify_upstream_trusted_ca": str(bundle),
        }
        # An explicit --listen-host/--listen-port (still loopback-checked) beats the config.
        if not ctx.options.listen_host:
            updates["listen_host"] = listen.host
        if ctx.options.listen_port is None:
            updates["listen_port"] = listen.port
        ctx.options.update(**updates)
        if self._running:
            self.state.learn_all()
        names = ", ".join(sorted(config.registries)) or "none"
        logger.info(f"registries: {names}; CA certificate for Cargo's cainfo: {ca.cert}")
