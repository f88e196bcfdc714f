"""`cargo vouch ca init | path | show | rotate`: the dedicated CA Cargo trusts for registry hosts."""

from __future__ import annotations

import argparse

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from cargo_vouch import paths
from cargo_vouch.ca.authority import (
    ca_files,
    ensure_ca,
    issue_ca,
    key_description,
    load_cert,
    permitted_hosts,
    secure_directory,
)
from cargo_vouch.config import load_config, registry_hosts
from cargo_vouch.errors import VouchError


def cmd_ca(args: argparse.Namespace) -> int:
    files = ca_files(paths.ca_dir())
    if args.ca_command == "path":
        print(files.cert)
        return 0
    hosts = registry_hosts(load_config(args.config))
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
            raise VouchError(f"no CA at {files.cert}; run 'cargo vouch ca init'")
        fingerprint = cert.fingerprint(hashes.SHA256())
        print(f"path:        {files.cert}")
        print(f"subject:     {cert.subject.rfc4514_string()}")
        print(f"valid:       {cert.not_valid_before_utc:%Y-%m-%d %H:%M} to {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
        constraints = cert.extensions.get_extension_for_class(x509.NameConstraints)
        excluded = [str(name.value) for name in constraints.value.excluded_subtrees or []]
        print(f"constraints: {'critical' if constraints.critical else 'NOT critical'}; "
              f"permitted {', '.join(sorted(permitted_hosts(cert))) or '(none)'}; "
              f"excluded {', '.join(excluded) or '(none)'}")
        print(f"key:         {key_description(cert)}")
        print(f"sha256:      {fingerprint.hex(':')}")
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("ca", help="the dedicated CA Cargo trusts for registry hosts")
    parser.add_argument("ca_command", choices=["init", "path", "show", "rotate"])
    parser.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help="cargo-vouch config file")
    parser.set_defaults(func=cmd_ca)
