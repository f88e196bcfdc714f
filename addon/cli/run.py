"""`cargo vouch run -- CMD`: the proxy for the length of one command, as CI needs it.

Everything the command needs to use the proxy goes into the child's environment, and only
there: no Cargo or git config file is written, so nothing is left to undo or to leak into
the next job. A random per-run proxy credential keeps other local users' processes out.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import secrets
import signal
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from cargo_vouch import paths
from cargo_vouch.ca.authority import ensure_ca
from cargo_vouch.cargo_config import env_name
from cargo_vouch.children import holds
from cargo_vouch.cli.environment import no_proxy_covers
from cargo_vouch.config import ListenAddress, VouchConfig, load_config, parse_listen, registry_hosts
from cargo_vouch.errors import UsageError, VouchError
from cargo_vouch.hardening import key_log_problem, protect_process
from cargo_vouch.proxy.lean_import import starting_up
from cargo_vouch.proxy.listener import bind_listeners, bound_address

#: The token Cargo sends where it insists on having one (`cargo publish` on any Cargo);
#: the proxy replaces it with the provider's. A real one in the caller's environment is
#: replaced too: the proxy (this process) still reads it for `cargo:token`.
PLACEHOLDER_TOKEN = "cargo-vouch"
PROXY_USER = "cargo-vouch"
#: How long CMD gets to exit after we pass on a signal, before it is killed.
SIGNAL_GRACE_SECONDS = 10.0
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass(frozen=True)
class ChildSettings:
    """What CMD is told: where the proxy is, with which credential, and which CA to trust."""

    proxy_url: str  # http://user:password@127.0.0.1:PORT
    cainfo: str


def child_environment(
    base: Mapping[str, str], config: VouchConfig, settings: ChildSettings
) -> tuple[dict[str, str], list[str]]:
    """CMD's environment, and notes on what was changed that a user should know."""
    env = dict(base)
    notes: list[str] = []
    env["CARGO_HTTP_PROXY"] = settings.proxy_url
    env["CARGO_HTTP_CAINFO"] = settings.cainfo

    # The git CLI (`net.git-fetch-with-cli`) reads its own settings: scope them to each git
    # index URL, after whatever GIT_CONFIG_* entries the caller passes already.
    git_settings = [
        (f"http.{registry.index}.{key}", value)
        for registry in config.registries.values()
        if not registry.is_sparse
        for key, value in (("proxy", settings.proxy_url), ("sslCAInfo", settings.cainfo))
    ]
    if git_settings and env.get("GIT_SSL_CAINFO"):
        # git lets GIT_SSL_CAINFO beat every sslCAInfo setting, URL-scoped ones included.
        # As a plain http.sslCAInfo it still serves every other host, while the index's
        # own URL-scoped setting wins there.
        git_settings.insert(0, ("http.sslCAInfo", env.pop("GIT_SSL_CAINFO")))
        notes.append("GIT_SSL_CAINFO: passed to git as http.sslCAInfo, so the registry's index URL can use the proxy's CA")
    if git_settings:
        count = int(env.get("GIT_CONFIG_COUNT") or 0)
        for offset, (key, value) in enumerate(git_settings):
            env[f"GIT_CONFIG_KEY_{count + offset}"] = key
            env[f"GIT_CONFIG_VALUE_{count + offset}"] = value
        env["GIT_CONFIG_COUNT"] = str(count + len(git_settings))

    # CMD and everything it runs (build scripts, dependencies' code) get a placeholder,
    # never a real token, and never the CI client secret the proxy itself reads: not under
    # its own name, nor a copy of it under another, nor inside another value (a JSON blob
    # of the job's secrets, `client:secret`).
    secrets = [os.fsencode(value) for value in secret_values(config, base).values()]
    for name in [name for name, value in env.items() if any(holds(os.fsencode(value), secret) for secret in secrets)]:
        del env[name]
    for name in config.registries:
        env[env_name(f"registries.{name}.token")] = PLACEHOLDER_TOKEN

    # curl honours NO_PROXY even with an explicit proxy: a registry host listed there
    # would be reached directly, without a token.
    hosts = registry_hosts(config)
    for variable in ("NO_PROXY", "no_proxy"):
        entries = env.get(variable, "").split(",")
        kept = [entry for entry in entries if not any(no_proxy_covers(entry, host) for host in hosts)]
        if len(kept) != len(entries):
            env[variable] = ",".join(kept)
            notes.append(f"{variable}: registry hosts taken out for CMD, so their requests go through the proxy")
    return env, notes


def secret_values(config: VouchConfig, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The secrets this process was given, by variable: the CI client secret and any real
    registry token (the placeholder is none)."""
    names = [*config.secret_variables, *(env_name(f"registries.{name}.token") for name in config.registries)]
    return {name: environ[name] for name in names if environ.get(name) not in (None, "", PLACEHOLDER_TOKEN)}


def exposed_secrets(config: VouchConfig, environ: Mapping[str, str] = os.environ, proc: Path = Path("/proc")) -> list[str]:
    """Secrets this process was given that another process still holds in its environment,
    under that name or any other, or on its command line: a parent shell, a step written
    `VOUCH_CLIENT_SECRET=… cargo vouch run -- …; next`, a daemon an earlier CI step left
    behind. CMD runs as this user, so it can read every environment this process can
    (/proc/PID/environ), and every user can read command lines, whatever `run` hides.
    One line per such process."""
    wanted = {name: os.fsencode(value) for name, value in secret_values(config, environ).items()}
    found: list[str] = []
    if not wanted:
        return found
    for entry in sorted(proc.iterdir(), key=lambda path: path.name):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        places = []
        for place, (file, split) in {"environment": ("environ", True), "command line": ("cmdline", False)}.items():
            try:
                held = (entry / file).read_bytes()
            except OSError:  # another user's environment, or gone: not CMD's to read either
                continue
            names = sorted(name for name, value in wanted.items() if holds(held, value, entries=split))
            if names:
                places.append((place, names))
        if places:
            try:
                program = (entry / "comm").read_text().strip()
            except OSError:
                program = "?"
            where = " and ".join(f"the value of {' and '.join(names)} is also in the {place}" for place, names in places)
            found.append(f"{where} of process {entry.name} ({program})")
    return found


def same_user_memory_readable(yama: Path = Path("/proc/sys/kernel/yama/ptrace_scope")) -> bool:
    """Whether a process may read the memory of any other dumpable process of its user (and
    so CMD that of a CI runner which holds the secret): on Linux without Yama, or with its
    ptrace_scope 0 (Debian's default)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return yama.read_text().strip() == "0"
    except OSError:
        return True


def exit_status(returncode: int) -> int:
    """A shell's convention: a command killed by signal N exits 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


class Command:
    """CMD for the length of `run`: SIGINT, SIGTERM and SIGHUP are passed on to it, and if
    it is still running SIGNAL_GRACE_SECONDS later, it is killed. `core_limit` is the
    core-file limit CMD gets back (this process runs with none, see hardening.py)."""

    def __init__(self, argv: list[str], env: dict[str, str], core_limit: tuple[int, int] | None = None) -> None:
        self.argv, self.env, self.core_limit = argv, env, core_limit
        # Without a terminal (CI) CMD gets a process group of its own, so that a signal
        # reaches everything it started (rustc, build scripts) and nothing outlives `run`.
        # With a terminal it stays in the foreground group, where Ctrl-C reaches it
        # directly and it may still read the terminal.
        self.own_group = not sys.stdin.isatty()
        self.process: asyncio.subprocess.Process | None = None
        self.received: list[int] = []

    async def __aenter__(self) -> Command:
        # Handlers first: a signal that arrives while CMD starts is passed on once it runs.
        loop = asyncio.get_running_loop()
        for sig in FORWARDED_SIGNALS:
            loop.add_signal_handler(sig, self.on_signal, sig)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        loop = asyncio.get_running_loop()
        for sig in FORWARDED_SIGNALS:
            loop.remove_signal_handler(sig)
        if self.received:
            self.deliver(signal.SIGKILL)  # anything CMD left behind in its group

    async def start(self) -> bool:
        """Starts CMD; False (and one line) if it cannot be started."""
        core_limit = self.core_limit
        try:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv, env=self.env, process_group=0 if self.own_group else None,
                preexec_fn=None if core_limit is None else partial(resource.setrlimit, resource.RLIMIT_CORE, core_limit),
            )
        except OSError as exc:
            print(f"cargo-vouch: run: cannot start '{self.argv[0]}': {exc.strerror or exc}", file=sys.stderr)
            return False
        for early in self.received:
            self.deliver(early)
        return True

    @property
    def exited(self) -> bool:
        return self.process is None or self.process.returncode is not None

    async def wait(self) -> int:
        """CMD's exit status, as a shell reports it."""
        assert self.process is not None
        return exit_status(await self.process.wait())

    def stop(self) -> None:
        """End CMD as a signal to `run` would: SIGTERM now, SIGKILL after the grace period."""
        self.on_signal(signal.SIGTERM)

    def on_signal(self, sig: int) -> None:
        if not self.received:
            asyncio.get_running_loop().call_later(SIGNAL_GRACE_SECONDS, self.deliver, signal.SIGKILL)
        self.received.append(sig)
        self.deliver(sig)

    def deliver(self, sig: int) -> None:
        process = self.process
        if process is None or (not self.own_group and process.returncode is not None):
            return
        try:
            if self.own_group:
                os.killpg(process.pid, sig)
            else:
                process.send_signal(sig)
        except ProcessLookupError:
            pass


async def _run(config: VouchConfig, listeners: list[socket.socket], argv: list[str], core_limit: tuple[int, int]) -> int:
    password = secrets.token_urlsafe(24)
    address = bound_address(listeners)
    settings = ChildSettings(
        proxy_url=f"http://{PROXY_USER}:{password}@{address}",
        cainfo=str(paths.ca_cert_path()),
    )
    env, notes = child_environment(os.environ, config, settings)
    for note in notes:
        print(f"cargo-vouch: {note}", file=sys.stderr)
    print(f"cargo-vouch: proxy on {address} for: {' '.join(argv)}", file=sys.stderr, flush=True)
    async with Command(argv, env, core_limit) as command:
        # The proxy is up, and has imported all it will ever import, before CMD starts:
        # CMD runs as this user and could otherwise put a module of its own where Python
        # would find it next (see proxy/sealed_imports.py).
        with starting_up():
            from cargo_vouch.proxy.inprocess import ProxyFailedToStart, start_proxy  # mitmproxy: loaded now

            try:
                proxy = await start_proxy(config, listeners, credential=(PROXY_USER, password))
            except ProxyFailedToStart:
                raise VouchError("run: the proxy did not start (see the error above); CMD was not run") from None
        try:
            if command.received:  # stopped while the proxy was starting: CMD never runs
                return exit_status(-command.received[0])
            if not await command.start():
                return 127
            return await command.wait()
        finally:
            await proxy.stop()


def cmd_run(args: argparse.Namespace) -> int:
    argv = list(args.cmd)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        raise UsageError("run: no command given; usage: cargo vouch run -- CMD [ARG...]")
    config = load_config(args.config)
    try:
        listen = parse_listen(args.listen) if args.listen else ListenAddress("127.0.0.1", 0)
    except ValueError as exc:
        raise UsageError(f"run: --listen: {exc}") from None
    if not config.registries:
        where = config.path or paths.config_path()[0]
        raise VouchError(f"run: no registries in {where}; add one (or run 'cargo vouch setup')")
    if problem := key_log_problem():
        raise VouchError(f"run: {problem}")  # checked by the proxy too, but before CMD starts here
    if secret_values(config) and same_user_memory_readable():
        print("cargo-vouch: warning: the command can read the memory of this user's other processes (no Yama "
              "ptrace restriction): a CI runner that holds the secret in memory exposes it to the build; "
              "see README, Security", file=sys.stderr)
    exposed = exposed_secrets(config)
    if exposed and not args.allow_exposed_secrets:
        raise VouchError(
            f"run: {'; '.join(exposed)}: the command and its build scripts could read it there "
            "(/proc/PID/environ); start run with exec ('exec cargo vouch run -- ...') and give the secret "
            "to no other process, or pass --allow-exposed-secrets"
        )
    # Before the proxy starts: mitmproxy's TLS addon would otherwise create its own,
    # unconstrained CA in the CA directory the moment it is pointed there.
    ensure_ca(paths.ca_dir(), registry_hosts(config))
    # CMD (build scripts, dependencies' code) must not read this process's memory or the
    # environment it started with, which holds the CI client secret and any real token.
    core_limit = protect_process()
    listeners = bind_listeners(listen)
    try:
        return asyncio.run(_run(config, listeners, argv, core_limit))
    finally:
        for sock in listeners:
            sock.close()


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    run = commands.add_parser(
        "run",
        help="run CMD with the proxy (for CI): cargo vouch run -- cargo build",
        description="Starts the proxy on a free loopback port, runs CMD with Cargo and git pointed at it "
        "(environment only, no file written), and stops the proxy when CMD ends. Exits with CMD's status.",
    )
    run.add_argument("--listen", help="loopback HOST:PORT (default: 127.0.0.1 and a free port)")
    run.add_argument(
        "--allow-exposed-secrets", action="store_true",
        help="run even when a parent process's environment holds a secret the proxy reads (CMD can read it there)",
    )
    run.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help="cargo-vouch config file")
    run.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD [ARG...]")
    run.set_defaults(func=cmd_run)
