"""The dedicated CA that Cargo trusts through `http.cainfo`.

It is not mitmproxy's general-purpose CA: it is name-constrained to the configured
registry hosts, so even if its key leaked it could not impersonate any other site to
the clients that trust it. It is re-issued (same paths) whenever the set of registry
hosts changes or it nears expiry, so `cainfo` never needs editing.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

import certifi
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from cargo_vouch.ca.files import write_atomic, write_if_changed

#: mitmproxy's CertStore reads `<confdir>/mitmproxy-ca.pem` (key + certificate).
MITMPROXY_STORE_NAME = "mitmproxy-ca.pem"
CERT_NAME = "cargo-vouch-ca-cert.pem"
VALIDITY = datetime.timedelta(days=730)
RENEW_BEFORE = datetime.timedelta(days=30)
#: RFC 6761 reserves `.invalid`: a CA for no registry at all can sign for nothing real.
NO_HOST = "invalid"


@dataclass(frozen=True)
class CaFiles:
    directory: Path
    #: For Cargo's `http.cainfo`: our CA first, then the system's roots, because cainfo
    #: replaces Cargo's trust store and tunnelled hosts (crates.io, …) must still verify.
    cert: Path
    store: Path  # private key + certificate, for mitmproxy only


def ca_files(directory: Path) -> CaFiles:
    return CaFiles(directory, directory / CERT_NAME, directory / MITMPROXY_STORE_NAME)


def permitted_hosts(cert: x509.Certificate) -> set[str]:
    """The registry hosts a CA certificate is constrained to."""
    try:
        constraints = cert.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return set()
    hosts: set[str] = set()
    for name in constraints.permitted_subtrees or ():
        if isinstance(name, x509.DNSName):
            hosts.add(name.value)
        elif isinstance(name, x509.IPAddress) and isinstance(name.value, ipaddress.IPv4Network | ipaddress.IPv6Network):
            hosts.add(str(name.value.network_address))
    hosts.discard(NO_HOST)
    return hosts


def key_description(cert: x509.Certificate) -> str:
    """The CA key's kind; a CA from before ECDSA keys says how to get one."""
    key = cert.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ECDSA {key.curve.name}"
    kind = "RSA" if isinstance(key, rsa.RSAPublicKey) else type(key).__name__
    return f"{kind} {getattr(key, 'key_size', '?')} bits ('cargo vouch ca rotate' for ECDSA P-256, which starts faster)"


def load_cert(files: CaFiles) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificates(files.store.read_bytes())[0]
    except (OSError, ValueError, IndexError):
        return None


def system_roots() -> Path:
    """The roots Cargo (libcurl with OpenSSL) trusts when cainfo is not set."""
    defaults = ssl.get_default_verify_paths()
    for candidate in (defaults.cafile, defaults.openssl_cafile):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return Path(certifi.where())


def write_cainfo_bundle(files: CaFiles, cert: x509.Certificate) -> None:
    """Rewritten at every start, so updates of the system roots reach Cargo too."""
    data = cert.public_bytes(serialization.Encoding.PEM) + b"\n" + system_roots().read_bytes()
    write_if_changed(files.cert, data, mode=0o644)


#: needs_reissue's reason when there is nothing to replace: no proxy can hold an older CA.
NO_CA_YET = "no CA yet"


def needs_reissue(files: CaFiles, hosts: set[str], now: datetime.datetime | None = None) -> str | None:
    """Why the CA must be (re-)issued, or None if it fits `hosts` and is valid."""
    now = now or datetime.datetime.now(datetime.UTC)
    cert = load_cert(files)
    if cert is None:
        return NO_CA_YET
    if permitted_hosts(cert) != {h.lower() for h in hosts}:
        return "registry hosts changed"
    try:
        constraints = cert.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints != name_constraints(hosts):
        return "name constraints out of date"
    if cert.not_valid_after_utc - now < RENEW_BEFORE:
        return "CA expires soon"
    return None


def ensure_ca(directory: Path, hosts: set[str]) -> tuple[CaFiles, str | None]:
    """The CA for `hosts`, issued if needed; also returns why it was (re-)issued."""
    files = ca_files(directory)
    secure_directory(directory)
    reason = needs_reissue(files, hosts)
    if reason:
        issue_ca(files, hosts)
    cert = load_cert(files)
    assert cert is not None
    write_cainfo_bundle(files, cert)
    return files, reason


def secure_directory(directory: Path) -> None:
    """The CA directory and its parent (CARGO_VOUCH_HOME) are 0700."""
    for path in (directory.parent, directory):
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)


def issue_ca(files: CaFiles, hosts: set[str]) -> None:
    # ECDSA P-256: mitmproxy loads this key at every start (an RSA key's consistency check
    # costs tens of milliseconds, each time) and uses it as every leaf's key, so each TLS
    # handshake with Cargo signs with it. Every TLS stack Cargo uses accepts P-256.
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "cargo-vouch registry CA"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cargo-vouch"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(name_constraints(hosts), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    write_atomic(files.store, key_pem + cert_pem, mode=0o600)
    write_cainfo_bundle(files, cert)


def name_constraints(hosts: set[str]) -> x509.NameConstraints:
    permitted: list[x509.GeneralName] = []
    has_v4 = has_v6 = False
    for host in sorted(h.lower() for h in hosts) or [NO_HOST]:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            permitted.append(x509.DNSName(host))
            continue
        permitted.append(x509.IPAddress(ipaddress.ip_network(address)))
        # mitmproxy's leaf for an address has it as its CN too, which OpenSSL checks
        # against the DNS constraints: permit that spelling as well.
        permitted.append(x509.DNSName(str(address)))
        has_v4 |= address.version == 4
        has_v6 |= address.version == 6
    # Constraints bind only the name forms they mention: shut out IP addresses explicitly.
    excluded: list[x509.GeneralName] = []
    if not has_v4:
        excluded.append(x509.IPAddress(ipaddress.ip_network("0.0.0.0/0")))
    if not has_v6:
        excluded.append(x509.IPAddress(ipaddress.ip_network("::/0")))
    return x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=excluded or None)
