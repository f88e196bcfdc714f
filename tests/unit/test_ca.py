"""The dedicated CA: private, name-constrained to the registry hosts, stable paths."""

import stat

from cryptography import x509

from ca.authority import ca_files, ensure_ca, load_cert, permitted_hosts


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
