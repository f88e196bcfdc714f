"""`cargo-vouch` (also `cargo vouch`, by Cargo's external-subcommand rule)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from addon import doctor, paths, run, setup, touch
from addon.config import (
    ConfigError,
    ListenAddress,
    load_config,
    parse_listen,
    registry_hosts,
)
from ca.authority import (
    ca_files,
    ensure_ca,
    issue_ca,
    load_cert,
    permitted_hosts,
    secure_directory,
)


def _load_config_or_exit(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    try:
        return load_config(args.config)
    except ConfigError as exc:
        print(f"cargo-vouch: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


def cmd_proxy(args: argparse.Namespace) -> int:
    """The proxy in the foreground until Ctrl-C: the addon of `mitmdump -s addon/vouch_addon.py`
    on a master with only the addons it needs (a quarter less time per request than
    mitmdump's full set, measured with tests/benchmarks/bench.py's fetch)."""
    config = _load_config_or_exit(args)
    try:
        listen = parse_listen(args.listen) if args.listen else config.proxy.listen
    except ValueError as exc:
        print(f"cargo-vouch: --listen: {exc}", file=sys.stderr)
        return 2
    # Before the proxy starts, as in `run`: mitmproxy would create its own CA there otherwise.
    ensure_ca(paths.ca_dir(), registry_hosts(config))
    return asyncio.run(_serve(config.path, listen))


async def _serve(config_path: Path | None, listen: ListenAddress) -> int:
    from addon.inprocess import (  # mitmproxy: imported when needed
        ProxyFailedToStart,
        start_proxy,
    )

    try:
        proxy = await start_proxy(config_path, listen, log_to=sys.stdout)
    except ProxyFailedToStart:
        print("cargo-vouch: the proxy did not start (see the error above)", file=sys.stderr)
        return 1
    print(f"cargo-vouch: proxy listening at {proxy.address} (Cargo's http.proxy: {proxy.url})", flush=True)
    print(f"cargo-vouch: CA certificate (Cargo's http.cainfo): {paths.ca_cert_path()}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait([stopped, proxy.task], return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    await proxy.stop()
    return 0


def cmd_ca(args: argparse.Namespace) -> int:
    files = ca_files(paths.ca_dir())
    if args.ca_command == "path":
        print(files.cert)
        return 0
    config = _load_config_or_exit(args)
    hosts = registry_hosts(config)
    if args.ca_command == "init":
        files, reason = ensure_ca(paths.ca_dir(), hosts)
        print(f"{files.cert} ({'issued: ' + reason if reason else 'already current'})")
    elif args.ca_command == "rotate":
        secure_directory(files.directory)  # issuing a fresh key once, not twice on a first run
        issue_ca(files, hosts)
        print(f"{files.cert}: new key and certificate for {', '.join(sorted(hosts)) or '(no registry)'}")
        print("cargo-vouch: restart any running proxy ('cargo vouch proxy' or mitmdump) so that it signs with the "
              "new key; Cargo's cainfo and git's sslCAInfo keep the same path, so setup need not be re-run")
    else:  # show
        cert = load_cert(files)
        if cert is None:
            print(f"cargo-vouch: no CA at {files.cert}; run 'cargo vouch ca init'", file=sys.stderr)
            return 1
        fingerprint = cert.fingerprint(hashes.SHA256())
        print(f"path:        {files.cert}")
        print(f"subject:     {cert.subject.rfc4514_string()}")
        print(f"valid:       {cert.not_valid_before_utc:%Y-%m-%d %H:%M} to {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
        constraints = cert.extensions.get_extension_for_class(x509.NameConstraints)
        excluded = [str(name.value) for name in constraints.value.excluded_subtrees or []]
        print(f"constraints: {'critical' if constraints.critical else 'NOT critical'}; "
              f"permitted {', '.join(sorted(permitted_hosts(cert))) or '(none)'}; "
              f"excluded {', '.join(excluded) or '(none)'}")
        print(f"sha256:      {fingerprint.hex(':')}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cargo-vouch",
        description="Short-lived Vouch tokens on every request Cargo makes to a private registry.",
    )
    parser.add_argument("--config", help="cargo-vouch config file (default: $CARGO_VOUCH_CONFIG, then the per-user one)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    proxy = commands.add_parser("proxy", help="run the proxy in the foreground")
    proxy.add_argument("--listen", help=f"loopback HOST:PORT (default: [proxy] listen, else {paths.DEFAULT_LISTEN})")
    proxy.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help="cargo-vouch config file")
    proxy.set_defaults(func=cmd_proxy)

    run.add_parser(commands)
    setup.add_parser(commands)
    doctor.add_parser(commands)
    touch.add_parser(commands)

    ca = commands.add_parser("ca", help="the dedicated CA Cargo trusts for registry hosts")
    ca.add_argument("ca_command", choices=["init", "path", "show", "rotate"])
    ca.set_defaults(func=cmd_ca)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Run as `cargo vouch …`, Cargo passes the subcommand name first.
    if argv[:1] == ["vouch"]:
        argv = argv[1:]
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
