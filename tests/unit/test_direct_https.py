"""The proxy's own HTTPS requests carry credentials: verified TLS, and the session keys go
to no file even when SSLKEYLOGFILE names one (a capture plus the keys would reveal them)."""

from __future__ import annotations

import socket
import ssl
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from cargo_vouch.direct_https import CredentialNotSent, direct_opener, verified_context
from examples.demo.tls import make_test_pki
from tests.fixtures.origin import TlsOrigin


def test_a_request_with_a_credential_writes_no_tls_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pki = make_test_pki(tmp_path / "pki")
    keys = tmp_path / "keys.log"
    monkeypatch.setenv("SSLKEYLOGFILE", str(keys))
    with TlsOrigin(tmp_path / "origin", pki) as origin:
        request = urllib.request.Request(f"{origin.url}/config.json", headers={"Authorization": "secret-token"})
        with direct_opener(verified_context(pki.ca_cert)).open(request, timeout=10) as answer:
            assert answer.status == 200
        assert origin.requests[0].headers and ("Authorization", "secret-token") in origin.requests[0].headers
    assert not keys.exists()
    # What the standard library would have done: a key log at that path.
    ssl.create_default_context(cafile=str(pki.ca_cert))
    assert keys.exists()


def test_only_the_roots_given_are_trusted(tmp_path: Path) -> None:
    pki = make_test_pki(tmp_path / "pki")
    other = make_test_pki(tmp_path / "other")
    with TlsOrigin(tmp_path / "origin", pki) as origin:
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            direct_opener(verified_context(other.ca_cert)).open(f"{origin.url}/", timeout=10)


def test_a_credential_never_goes_over_plain_http(tmp_path: Path) -> None:
    pki = make_test_pki(tmp_path / "pki")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        request = urllib.request.Request(f"http://127.0.0.1:{port}/config.json", headers={"Authorization": "secret-token"})
        with pytest.raises(CredentialNotSent, match="not https"):
            direct_opener(verified_context(pki.ca_cert)).open(request, timeout=10)
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing even connected
