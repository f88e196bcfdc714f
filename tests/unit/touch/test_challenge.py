"""Which write a touch approves: the prompt's words and the challenge's bytes."""

from __future__ import annotations

import hashlib
import json

import pytest
from fido2.ctap2 import Ctap2

from cargo_vouch.protocol import Owners, Publish, Unyank, Yank
from cargo_vouch.touch.challenge import OwnersChange, WriteIntent, client_data, verify_assertion
from cargo_vouch.touch.enrollment import TouchError
from tests.unit.touch.conftest import PUBLISH


def test_describe_names_the_write():
    assert PUBLISH.describe() == "publish hello v0.1.0 to corp (.crate sha256 aaaaaaaaaaaaaaaa)"
    assert WriteIntent("corp", Yank("hello", "0.1.0")).describe() == "yank hello v0.1.0 on corp"
    assert WriteIntent("corp", Unyank("hello", "0.1.0")).describe() == "unyank hello v0.1.0 on corp"
    assert WriteIntent("corp", Owners("hello")).describe() == "change owners of hello on corp"
    added = WriteIntent("corp", Owners("hello"), OwnersChange("PUT", ("bob", "eve")))
    assert added.describe() == "add bob, eve to the owners of hello on corp"
    removed = WriteIntent("corp", Owners("hello"), OwnersChange("DELETE", ("bob",)))
    assert removed.describe() == "remove bob from the owners of hello on corp"
    nonce = b"\0" * 32
    assert client_data(added, nonce) != client_data(
        WriteIntent("corp", Owners("hello"), OwnersChange("PUT", ("bob", "mallory"))), nonce)
    assert client_data(added, nonce) != client_data(
        WriteIntent("corp", Owners("hello"), OwnersChange("DELETE", ("bob", "eve"))), nonce)


def test_client_data_is_canonical_and_binds_every_field():
    nonce = b"\x01" * 32
    data = json.loads(client_data(PUBLISH, nonce))
    assert data == {
        "type": "cargo-vouch.write",
        "registry": "corp",
        "operation": "publish",
        "name": "hello",
        "vers": "0.1.0",
        "cksum": "a" * 64,
        "nonce": "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE",
    }
    assert client_data(PUBLISH, nonce) == client_data(PUBLISH, nonce)
    tampered = WriteIntent("corp", Publish("hello", "0.1.0", "b" * 64))
    assert client_data(tampered, nonce) != client_data(PUBLISH, nonce)


def test_assertion_for_another_write_does_not_verify(enrolled, soft):
    """A tampered cksum: the key signed one write, the proxy is asked to let another through."""
    nonce = b"\x02" * 32
    signed_for = hashlib.sha256(client_data(PUBLISH, nonce)).digest()
    tampered = WriteIntent("corp", Publish("hello", "0.1.0", "b" * 64))
    presented_as = hashlib.sha256(client_data(tampered, nonce)).digest()
    assertion = Ctap2(soft).get_assertion(
        "cargo-vouch", signed_for, [{"type": "public-key", "id": enrolled.credential_id}], options={"up": True}
    )
    with pytest.raises(TouchError, match=r"^signature does not verify$"):
        verify_assertion(enrolled, assertion, presented_as)
    assert verify_assertion(enrolled, assertion, signed_for) == 1
