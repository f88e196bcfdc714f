"""The dedicated CA: private, name-constrained to the registry hosts, stable paths."""

import datetime
import stat

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from cargo_vouch.ca.authority import ca_files, ensure_ca, key_description, load_cert, name_constraints, permitted_hosts


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_ca_is_private_and_constrained(tmp_path):
    directory = tmp_path / "home" / "ca"
    files, reason = ensure_ca(directory, {"cargo.corp.example", "git.corp.example"})
    assert reason == "no CA yet"
    assert mode(directory) == 0o700 and mode(directory.parent) == 0o700
    assert mode(files.store) == 0o600
    cert = load_cert(files)
    constraints = cert.extensions.get_extension_for_class(x509.NameConstraints)
    assert constraints.critical
    assert permitted_hosts(cert) == {"cargo.corp.example", "git.corp.example"}
    excluded = {str(n.value) for n in constraints.value.excluded_subtrees}
    assert excluded == {"0.0.0.0/0", "::/0"}  # no IP address either
    assert b"PRIVATE KEY" not in files.cert.read_bytes()


def test_cainfo_bundle_keeps_system_roots(tmp_path):
    files, _ = ensure_ca(tmp_path / "ca", {"cargo.corp.example"})
    bundle = x509.load_pem_x509_certificates(files.cert.read_bytes())
    assert bundle[0] == load_cert(files)
    assert len(bundle) > 10  # the system's roots follow, so tunnelled hosts still verify


def test_reissued_only_when_hosts_change(tmp_path):
    directory = tmp_path / "ca"
    files, _ = ensure_ca(directory, {"a.example"})
    first = load_cert(files)
    assert ensure_ca(directory, {"a.example"})[1] is None
    assert load_cert(files) == first
    files, reason = ensure_ca(directory, {"a.example", "b.example"})
    assert reason == "registry hosts changed"
    assert permitted_hosts(load_cert(files)) == {"a.example", "b.example"}
    assert files == ca_files(directory)  # same paths: Cargo's cainfo stays valid


def test_no_registry_means_a_ca_for_nothing(tmp_path):
    files, _ = ensure_ca(tmp_path / "ca", set())
    cert = load_cert(files)
    constraints = cert.extensions.get_extension_for_class(x509.NameConstraints).value
    assert [n.value for n in constraints.permitted_subtrees] == ["invalid"]
    assert permitted_hosts(cert) == set()


def _leaf_signed_by_ca(files, host: str, directory):  # type: ignore[no-untyped-def]
    """A server certificate for `host` signed with the CA's own key, as a thief of the key
    (or a confused proxy) could make it."""
    import datetime

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    pem = files.store.read_bytes()
    ca_key = serialization.load_pem_private_key(pem, password=None)
    ca_cert = x509.load_pem_x509_certificate(pem)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{host}.pem", directory / f"{host}.key"
    cert_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def _handshake(cafile, cert_path, key_path, host: str) -> None:  # type: ignore[no-untyped-def]
    """A TLS handshake in memory: OpenSSL's verification, as curl and Cargo use it."""
    import ssl

    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_path, key_path)
    client_ctx = ssl.create_default_context(cafile=str(cafile))
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=host)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(20):
        done = True
        for side, outgoing, peer_in in ((client, c_out, s_in), (server, s_out, c_in)):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                done = False
            peer_in.write(outgoing.read())
        if done:
            return
    raise AssertionError("handshake did not finish")


def test_a_leaf_outside_the_constraints_fails_verification_even_signed_with_the_ca_key(tmp_path):
    import ssl

    import pytest

    files, _ = ensure_ca(tmp_path / "ca", {"cargo.corp.example"})
    inside = _leaf_signed_by_ca(files, "cargo.corp.example", tmp_path)
    outside = _leaf_signed_by_ca(files, "bank.example", tmp_path)

    _handshake(files.cert, *inside, "cargo.corp.example")  # the registry host verifies
    with pytest.raises(ssl.SSLCertVerificationError, match="(?i)name constraint|permitted subtree"):
        _handshake(files.cert, *outside, "bank.example")


def test_ca_show_and_rotate_commands(tmp_path, monkeypatch, capsys):
    from cargo_vouch.cli import main as cli

    config = tmp_path / "config.toml"
    config.write_text('[registries.corp]\nindex = "sparse+https://cargo.corp.example/index/"\n')
    monkeypatch.setenv("CARGO_VOUCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CARGO_VOUCH_CONFIG", str(config))

    assert cli.main(["ca", "show"]) == 1
    assert "run 'cargo vouch ca init'" in capsys.readouterr().err
    cli.main(["ca", "init"])
    capsys.readouterr()
    cli.main(["ca", "show"])
    shown = dict(line.split(":", 1) for line in capsys.readouterr().out.splitlines())
    assert shown["constraints"].strip() == "critical; permitted cargo.corp.example; excluded 0.0.0.0/0, ::/0"
    assert "CN=cargo-vouch registry CA" in shown["subject"] and " to " in shown["valid"]
    assert shown["key"].strip() == "ECDSA secp256r1"

    assert cli.main(["vouch", "ca", "rotate"]) == 0  # as `cargo vouch ca rotate` calls it
    assert "restart any running proxy" in capsys.readouterr().out
    cli.main(["ca", "show"])
    rotated = dict(line.split(":", 1) for line in capsys.readouterr().out.splitlines())
    assert rotated["sha256"] != shown["sha256"]


def test_a_ca_from_before_ecdsa_keeps_working_and_show_says_how_to_replace_it(tmp_path):
    """CAs issued with RSA keys (before ECDSA) are not re-issued behind the user's back: a
    running proxy would go on signing with the old key. `ca show` names the way to move."""
    files = ca_files(tmp_path / "ca")
    ensure_ca(files.directory, {"cargo.corp.example"})
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cargo-vouch registry CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=300))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(name_constraints({"cargo.corp.example"}), critical=True)
        .sign(key, hashes.SHA256())
    )
    files.store.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                          serialization.NoEncryption()) + cert.public_bytes(serialization.Encoding.PEM)
    )
    assert ensure_ca(files.directory, {"cargo.corp.example"})[1] is None
    assert load_cert(files) == cert
    assert key_description(cert) == "RSA 2048 bits ('cargo vouch ca rotate' for ECDSA P-256, which starts faster)"
