"""`cargo-vouch doctor`: check every link between Cargo and the registry, and say what to do.

One line per check: `ok`, `warn` (worth knowing, does not fail) or `FAIL` followed by what to
do. Each check asks the same code the proxy and `setup` use (config loading, the CA, Cargo's
config hierarchy, the environment rules, the providers), so doctor cannot disagree with them.
The exit status is 0 only when no check fails. No token is ever printed: the provider check
shows the token's subject and expiry, read from its claims.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509

from cargo_vouch import cargo_config, paths
from cargo_vouch.ca.authority import ca_files, load_cert, needs_reissue, permitted_hosts
from cargo_vouch.cargo_config import CargoConfigError, Found, git_index_url, redact_url
from cargo_vouch.cli import cargo_version, index_hosts, listening
from cargo_vouch.cli.environment import env_overrides
from cargo_vouch.config import (
    ConfigError,
    ListenAddress,
    RegistryConfig,
    VouchConfig,
    load_config,
    registry_hosts,
)
from cargo_vouch.errors import UsageError
from cargo_vouch.protocol import Dialect, ProviderError, Read
from cargo_vouch.providers import provider_for
from cargo_vouch.providers.token_cache import TokenCache

#: The first Cargo that sends a credential provider's token on index fetches and downloads.
AUTHENTICATING_CARGO = (1, 74)
PROXY_TIMEOUT = 1.0
CARGO_TIMEOUT = 30.0
GIT_TIMEOUT = 10.0


@dataclass(frozen=True)
class Check:
    """One check's outcome; `hint` says what to do (for a failure or a warning)."""

    name: str
    ok: bool
    detail: str
    hint: str = ""
    warn: bool = False  # passed, but worth a note

    @property
    def status(self) -> str:
        return "FAIL" if not self.ok else "warn" if self.warn else "ok"

    def line(self) -> str:
        text = f"{self.status:<4} {self.name}: {self.detail}"
        return f"{text} — {self.hint}" if self.hint else text


# ---------------------------------------------------------------- checks


def check_cargo(cwd: Path) -> Check:
    """The Cargo a build would run: `$CARGO` (set when run as `cargo vouch`), else PATH's."""
    program = os.environ.get("CARGO") or "cargo"
    origin = " (from $CARGO)" if os.environ.get("CARGO") else ""
    try:
        result = subprocess.run(
            [program, "--version"],
            cwd=cwd,  # rustup picks the project's toolchain (rust-toolchain.toml) from here
            env={"RUSTUP_AUTO_INSTALL": "0", **os.environ},  # a check installs no toolchain
            capture_output=True,
            text=True,
            timeout=CARGO_TIMEOUT,
            check=False,
        )
    except FileNotFoundError:
        where = f"{program}{origin}" if origin else "cargo on PATH"
        return Check("cargo", False, f"no {where}", "install Rust (https://rustup.rs) or put cargo on PATH")
    except OSError as exc:
        return Check("cargo", False, f"cannot run {program}{origin}: {exc.strerror or exc}", "check the cargo on PATH")
    except subprocess.TimeoutExpired:
        detail = f"'{program} --version' did not finish in {CARGO_TIMEOUT:g} s"
        return Check("cargo", False, detail, "check the toolchain")
    if result.returncode != 0:
        return Check(
            "cargo",
            False,
            f"'{program} --version' failed{origin}: {_first_line(result.stderr or result.stdout)}",
            "fix the toolchain (with rustup: 'rustup default stable')",
        )
    version = result.stdout.strip() + origin
    match = re.match(r"cargo (\d+)\.(\d+)", result.stdout)
    if match and (int(match[1]), int(match[2])) < AUTHENTICATING_CARGO:
        version += "; before 1.74 Cargo cannot authenticate index fetches and downloads, the proxy does it"
    return Check("cargo", True, version)


def check_config(config_arg: str | None, only: str | None) -> tuple[Check, VouchConfig | None, list[RegistryConfig]]:
    """The cargo-vouch config loads and names the registries to check."""
    setup_hint = f"run 'cargo vouch setup --registry {only or 'NAME'}' in the project (it adds the registry)"
    try:
        config = load_config(config_arg)
    except ConfigError as exc:
        return Check("config", False, str(exc), "fix that key in the file"), None, []
    if config.path is None:
        path, _ = paths.config_path(config_arg)
        return Check("config", False, f"no config file at {path}", setup_hint), config, []
    if only is not None:
        if only not in config.registries:
            return Check("config", False, f"{config.path}: no [registries.{only}]", setup_hint), config, []
        registries = [config.registries[only]]
    else:
        registries = list(config.registries.values())
        if not registries:
            return Check("config", False, f"{config.path}: no [registries.NAME]", setup_hint), config, []
    names = ", ".join(r.name for r in registries)
    return Check("config", True, f"{config.path}: {names}; proxy on {config.proxy.listen}"), config, registries


def check_ca(config: VouchConfig, now: datetime.datetime | None = None) -> Check:
    """The dedicated CA exists, is valid now, and may sign for every registry host."""
    now = now or datetime.datetime.now(datetime.UTC)
    files = ca_files(paths.ca_dir())
    cert = load_cert(files)
    if cert is None or not files.cert.is_file():
        return Check("ca", False, f"no CA at {files.cert}", "run 'cargo vouch ca init'")
    if not cert.not_valid_before_utc <= now < cert.not_valid_after_utc:
        return Check(
            "ca",
            False,
            f"the CA at {files.cert} is not valid now (valid {cert.not_valid_before_utc:%Y-%m-%d} "
            f"to {cert.not_valid_after_utc:%Y-%m-%d})",
            "run 'cargo vouch ca rotate'",
        )
    if _bundle_head(files.cert) != cert:
        return Check("ca", False, f"{files.cert} does not hold the current CA", "run 'cargo vouch ca init'")
    hosts = registry_hosts(config)
    missing = sorted(hosts - permitted_hosts(cert))
    if missing:
        return Check(
            "ca",
            False,
            f"the CA at {files.cert} may not sign for {', '.join(missing)}",
            "run 'cargo vouch ca init' (re-issues it for the configured registries)",
        )
    for_hosts = ", ".join(sorted(hosts)) or "(no host)"
    detail = f"{files.cert}, valid until {cert.not_valid_after_utc:%Y-%m-%d}, for {for_hosts}"
    reason = needs_reissue(files, hosts, now)
    if reason:
        detail += f" (the proxy re-issues it at its next start: {reason})"
    return Check("ca", True, detail)


def check_cargo_config(cwd: Path, proxy: str, ca: Path, registry: str | None) -> Check:
    """Cargo's config files (what setup writes) point at the proxy and the CA.

    Files only: an environment variable that overrides them is the environment check's.
    """
    hint = _setup_hint(registry, cwd)
    try:
        found_proxy = cargo_config.file_value("http.proxy", cwd)
        found_ca = cargo_config.file_value("http.cainfo", cwd)
    except CargoConfigError as exc:
        return Check("cargo config", False, str(exc), "fix the file")
    problems: list[str] = []
    if found_proxy is None:
        problems.append(f"http.proxy is not set in Cargo's config for {cwd}")
    elif not isinstance(found_proxy.value, str) or not same_proxy(found_proxy.value, proxy):
        shown = redact_url(found_proxy.value) if isinstance(found_proxy.value, str) else repr(found_proxy.value)
        problems.append(f"http.proxy = {shown} in {found_proxy.source}, but the proxy listens on {proxy}")
    if found_ca is None:
        problems.append(f"http.cainfo is not set in Cargo's config for {cwd}")
    elif not isinstance(found_ca.value, str) or _config_path(found_ca) != ca.resolve():
        problems.append(f"http.cainfo = {found_ca.value} in {found_ca.source}, not the CA {ca}")
    if problems:
        return Check("cargo config", False, "; ".join(problems), hint)
    assert found_proxy is not None and found_ca is not None
    sources = ", ".join(dict.fromkeys((found_proxy.source, found_ca.source)))
    return Check("cargo config", True, f"http.proxy = {proxy}, http.cainfo = the CA ({sources})")


def check_registry_index(
    registry: RegistryConfig, config_path: Path | None, cwd: Path, cargo: tuple[int, int] | None = None
) -> Check:
    """Cargo and cargo-vouch name the same index for the registry, of a kind the Cargo in
    use (`cargo`: its version) can read."""
    name = f"registry {registry.name}"
    try:
        found = cargo_config.registry_index(registry.name, cwd)
    except CargoConfigError as exc:
        return Check(name, False, str(exc), "fix the file")
    if found is None:
        return Check(
            name,
            False,
            f"Cargo's config for {cwd} has no [registries.{registry.name}]",
            f'add [registries.{registry.name}] index = "{redact_url(registry.index)}" to '
            f"{cwd / '.cargo' / 'config.toml'}, then {_setup_hint(registry.name, cwd)}",
        )
    if found.value.rstrip("/") != registry.index.rstrip("/"):  # the comparison setup makes
        return Check(
            name,
            False,
            f"Cargo's index is {redact_url(found.value)} ({found.source}), cargo-vouch's is "
            f"{redact_url(registry.index)} ({config_path})",
            "make them the same",
        )
    advice = cargo_version.advice(cargo, registry.index) if cargo else None
    if advice is not None:
        return Check(name, False, f"index {redact_url(registry.index)} is a sparse index", advice)
    return Check(name, True, f"index {redact_url(registry.index)} ({found.source})")


def check_git(registry: RegistryConfig, cwd: Path, proxy: str, ca: Path) -> Check | None:
    """With `net.git-fetch-with-cli`, git fetches a git index: its URL-scoped settings must
    send it through the proxy and trust the CA. None when git does not fetch this index."""
    name = f"git {registry.name}"
    try:
        found = cargo_config.registry_index(registry.name, cwd)
        url = git_index_url(found.value if found else registry.index)
        if url is None or not cargo_config.git_fetch_with_cli(cwd):
            return None
    except CargoConfigError as exc:
        return Check(name, False, str(exc), "fix the file")
    hint = _setup_hint(registry.name, cwd)
    problems: list[str] = []
    for var, expected in (("proxy", proxy), ("sslCAInfo", str(ca))):
        try:
            value = _git_urlmatch(f"http.{var}", url)
        except (OSError, subprocess.TimeoutExpired) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            return Check(name, False, f"cannot run git ({reason}); net.git-fetch-with-cli is on", "install git")
        if value is None:
            problems.append(f"git's http.{var} for {redact_url(url)} is not set")
        elif (var == "proxy" and not same_proxy(value, expected)) or (
            var == "sslCAInfo" and Path(value).expanduser().resolve() != ca.resolve()
        ):
            shown = redact_url(value) if var == "proxy" else value
            problems.append(f"git's http.{var} for {redact_url(url)} is {shown}, not {expected}")
    if problems:
        return Check(name, False, "; ".join(problems), hint)
    return Check(name, True, f"git fetches {redact_url(url)} through {proxy}, trusting the CA")


def check_environment(registries: Iterable[RegistryConfig], cwd: Path, proxy: str, ca: Path) -> list[Check]:
    """Variables that override the setup, by the rules `setup` warns with.

    `HTTPS_PROXY`, `https_proxy` and `http_proxy` are not among them: Cargo (and git, for
    its URL-scoped `proxy`) use the configured proxy and leave those to libcurl only when
    none is configured, which the cargo config check already fails on.
    """
    seen: dict[tuple[str, str], Check] = {}
    for registry in registries:
        try:
            git_cli = git_index_url(registry.index) is not None and cargo_config.git_fetch_with_cli(cwd)
        except CargoConfigError:
            git_cli = False  # reported by the git check
        for override in env_overrides(registry.name, registry.index, proxy, str(ca), git_cli):
            passes = not override.blocking
            check = Check("environment", passes, override.problem, override.fix, warn=passes)
            seen.setdefault((override.variable, override.problem), check)
    return list(seen.values()) or [Check("environment", True, "no variable overrides the setup")]


def check_proxy(listen: ListenAddress) -> Check:
    """This user's proxy accepts connections where Cargo is told it listens."""
    found = listening.probe(listen, PROXY_TIMEOUT)
    if not found.reachable:
        return Check(
            "proxy",
            False,
            f"nothing accepts connections on {listen} ({found.reason})",
            "start it: 'cargo vouch proxy' (or 'mitmdump -s \"$(cargo vouch addon-path)\"')",
        )
    if found.unknown:
        return Check(
            "proxy",
            False,
            f"{listen} accepts connections, but who holds it cannot be told (each connection was gone before its "
            "owner could be looked up), and cargo-vouch's proxy keeps its connections open",
            "see who listens there: 'ss -ltnp'; if it is not your proxy, pick another port for [proxy] listen",
        )
    if found.foreign:
        return Check(
            "proxy",
            False,
            f"{found.describe(listen)}: Cargo's connections would go to that user's process",
            "pick another port for [proxy] listen, run 'cargo vouch setup' again, and start the proxy at login "
            "so that the port is yours first",
        )
    return Check("proxy", True, f"{listen} accepts connections")


def check_provider(registry: RegistryConfig, upstream_ca: Path | None = None, now: float | None = None) -> Check:
    """The registry's provider hands out a token now; shows whose, for how long, and in
    which dialect of the protocol an external provider answered."""
    name = f"provider {registry.name}"
    provider = provider_for(registry, upstream_ca)
    try:
        # Through the proxy's own cache, so doctor applies its checks to the token too.
        issued = asyncio.run(TokenCache().get(registry.name, provider, Read()))
    except ProviderError as exc:
        hint = provider.login_hint
        if hint in exc.message:  # Vouch's own message already says "run 'vouch login'"
            hint = "then run 'cargo vouch doctor' again"
        elif exc.kind != "not-found":
            hint = f"check that `{provider.description}` works on its own; if it needs a session: {hint}"
        return Check(name, False, f"{provider.description}: {exc.message}{_dialect(exc.dialect)}", hint)
    subject = f"subject={issued.subject}" if issued.subject else "subject unknown (not a JWT)"
    dialect = _dialect(issued.token.dialect)
    left = issued.seconds_left(time.time() if now is None else now)
    if left is None:
        return Check(name, True, f"{provider.description}: {subject}, no expiry{dialect}")
    if left <= 0:
        return Check(
            name, False, f"{provider.description}: {subject}, expired {_duration(-left)} ago{dialect}",
            provider.login_hint,
        )
    return Check(name, True, f"{provider.description}: {subject} expires in {_duration(left)}{dialect}")


def check_index_hosts(registry: RegistryConfig, config: VouchConfig) -> Check:
    """config.json's `dl` and `api` are on hosts the config covers (else they get no token)."""
    name = f"dl/api {registry.name}"
    try:
        data = index_hosts.read_config_json(registry, config.proxy.upstream_ca, config.proxy.listen, config.secret_variables)
    except index_hosts.Unreadable as exc:
        return Check(name, True, f"config.json not read ({exc})", "run doctor again once it can be read", warn=True)
    missing, problems = index_hosts.uncovered(registry, data, config.registries.values())
    if problems:
        return Check(name, False, "; ".join(problems), f"ask the registry's operator; nothing to add to {config.path}")
    if missing:
        shown = "; ".join(f"{m.key} = {m.value} is on a host the config does not cover" for m in missing)
        lines = ", ".join(f'"{m.prefix}"' for m in missing)
        return Check(name, False, shown, f"add {lines} to prefixes in [registries.{registry.name}] of {config.path}")
    dl, api = data.get("dl", "-"), data.get("api", "-")
    return Check(name, True, f"dl = {dl}, api = {api}: on configured hosts")


def _dialect(dialect: Dialect | None) -> str:
    return "" if dialect is None else f"; {dialect.describe()}"


# ---------------------------------------------------------------- running


def run_checks(config_arg: str | None, registry: str | None, cwd: Path) -> list[Check]:
    """Every check, in the order a request travels; later checks that need the config are
    skipped when it does not load."""
    checks = [check_cargo(cwd)]
    config_check, config, registries = check_config(config_arg, registry)
    checks.append(config_check)
    if config is None:
        return checks
    proxy = config.proxy.listen.url
    ca = paths.ca_cert_path()
    checks.append(check_ca(config))
    unused: list[RegistryConfig] = []
    if registry is None:
        unused, registries = _unused_here(registries, cwd)
    checks.append(check_cargo_config(cwd, proxy, ca, registry or _only_name(registries)))
    checks += [
        Check(f"registry {entry.name}", True, f"the project in {cwd} does not use it (its Cargo config has no "
              f"[registries.{entry.name}]); not checked", "doctor --registry NAME checks it anyway", warn=True)
        for entry in unused
    ]
    cargo = cargo_version.installed(cwd)
    for entry in registries:
        checks.append(check_registry_index(entry, config.path, cwd, cargo))
        git = check_git(entry, cwd, proxy, ca)
        if git is not None:
            checks.append(git)
    if registries:  # the variables that matter depend on the registry's host
        checks += check_environment(registries, cwd, proxy, ca)
    checks.append(check_proxy(config.proxy.listen))
    for entry in registries:
        provider = check_provider(entry, config.proxy.upstream_ca)
        checks.append(provider)
        if provider.ok:
            checks.append(check_index_hosts(entry, config))
    return checks


def _unused_here(registries: list[RegistryConfig], cwd: Path) -> tuple[list[RegistryConfig], list[RegistryConfig]]:
    """(registries the project's Cargo config does not name, the others), when it names at
    least one: a cargo-vouch config serves many projects, each using some of its registries.
    A project that names none of them is checked in full: that is the problem to report."""
    def named(entry: RegistryConfig) -> bool:
        try:
            return cargo_config.registry_index(entry.name, cwd) is not None
        except CargoConfigError:
            return True  # its check says what is wrong with the file
    used = [entry for entry in registries if named(entry)]
    if not used:
        return [], registries
    return [entry for entry in registries if entry not in used], used


def cmd_doctor(args: argparse.Namespace) -> int:
    """Entry point for `cargo-vouch doctor`: 0 when every check passes, else 1."""
    cwd = Path(args.manifest_dir) if args.manifest_dir else Path.cwd()
    if not cwd.is_dir():
        raise UsageError(f"doctor: --manifest-dir {args.manifest_dir}: no such directory")
    checks = run_checks(args.config, args.registry, cwd.resolve())
    for check in checks:
        print(check.line(), flush=True)
    failed = sum(not check.ok for check in checks)
    print(f"{failed} of {len(checks)} checks failed" if failed else f"all {len(checks)} checks passed")
    return 1 if failed else 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `doctor`; `--config` is SUPPRESSed so a top-level `--config` is not overwritten."""
    parser = subparsers.add_parser(
        "doctor",
        help="check Cargo, the proxy, the CA, Cargo's config, the environment and the providers",
        description="Check every link between Cargo and the registry and say what to do about "
        "each problem. Exits 0 only when every check passes; never prints a token.",
    )
    parser.add_argument("--registry", metavar="NAME", help="check only this registry (default: all configured)")
    parser.add_argument(
        "--manifest-dir", metavar="DIR", help="read Cargo's config as a build in DIR would (default: current directory)"
    )
    parser.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help="cargo-vouch config file")
    parser.set_defaults(func=cmd_doctor)


# ---------------------------------------------------------------- helpers


def _config_path(found: Found) -> Path:
    """A path from Cargo's config: relative ones are relative to the directory holding `.cargo`."""
    path = Path(found.value)
    if not path.is_absolute():
        base = Path.cwd() if found.source.startswith("env ") else Path(found.source).parent.parent
        path = base / path
    return path.resolve()


def same_proxy(value: str, expected: str) -> bool:
    """Whether a configured proxy is the expected `http://HOST:PORT` (libcurl's default scheme
    is http; any user:password part is the user's business)."""
    parts = urlsplit(value.strip() if "://" in value else f"http://{value.strip()}")
    want = urlsplit(expected)
    try:
        return (parts.scheme, parts.hostname, parts.port, parts.path.strip("/")) == (
            want.scheme,
            want.hostname,
            want.port,
            "",
        )
    except ValueError:
        return False


def _git_urlmatch(key: str, url: str) -> str | None:
    """`git config --get-urlmatch KEY URL` as the git that Cargo runs sees it (not a project's
    repository config: Cargo fetches inside `$CARGO_HOME`); None when unset."""
    home = cargo_config.cargo_home()
    result = subprocess.run(
        ["git", "config", "--get-urlmatch", key, url],
        cwd=home if home.is_dir() else tempfile.gettempdir(),
        capture_output=True,
        text=True,
        timeout=GIT_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


def _bundle_head(path: Path) -> x509.Certificate | None:
    """The first certificate of the cainfo bundle (ours; the system roots follow it)."""
    try:
        return x509.load_pem_x509_certificates(path.read_bytes())[0]
    except (OSError, ValueError, IndexError):
        return None


def _setup_hint(registry: str | None, cwd: Path) -> str:
    where = "" if cwd == Path.cwd().resolve() else f" --manifest-dir {cwd}"
    return f"run 'cargo vouch setup --registry {registry or 'NAME'}{where}'"


def _only_name(registries: list[RegistryConfig]) -> str | None:
    return registries[0].name if len(registries) == 1 else None


def _duration(seconds: int) -> str:
    """`7h59m`, `12m`, `40s`."""
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or ["no output"])[0]
