"""The challenge a touch signs: exactly one write, as the user would describe it.

Its hash covers the registry, operation, crate, version and checksum (or the users an
owners change adds or removes) plus a fresh nonce, so an assertion made for one write never
verifies for another, and an old one played back never verifies at all.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from fido2.ctap2 import AssertionResponse
from fido2.utils import websafe_encode
from fido2.webauthn import AuthenticatorData

from cargo_vouch.protocol import Owners, Publish, Unyank, Write, Yank, operation_fields
from cargo_vouch.touch.enrollment import Enrollment, TouchError, short_credential_id


@dataclass(frozen=True)
class OwnersChange:
    """What an owners request does: PUT adds, DELETE removes these users."""

    method: str
    users: tuple[str, ...]


@dataclass(frozen=True)
class WriteIntent:
    """One write, as the user would describe it; what the touch is bound to."""

    registry: str
    operation: Write
    #: For an owners change: which users it adds or removes (read from its body).
    owners_change: OwnersChange | None = None

    def describe(self) -> str:
        """For the prompt: "publish hello v0.1.0 to corp (.crate sha256 …)", "add bob to the owners
        of hello on corp"."""
        operation = self.operation
        match operation:
            case Publish(name, vers, cksum):
                # The checksum tells this crate from another sent as the same version (a build
                # script's, during the user's own `cargo publish`): compare it with
                # `sha256sum target/package/NAME-VERSION.crate`.
                return f"publish {name} v{vers} to {self.registry} (.crate sha256 {cksum[:16]})"
            case Yank(name, vers) | Unyank(name, vers):
                return f"{operation.kind} {name} v{vers} on {self.registry}"
        change = self.owners_change
        users = ", ".join(change.users) if change else ""
        if change and users and change.method == "PUT":
            return f"add {users} to the owners of {operation.name} on {self.registry}"
        if change and users and change.method == "DELETE":
            return f"remove {users} from the owners of {operation.name} on {self.registry}"
        return f"change owners of {operation.name} on {self.registry}"


def client_data(intent: WriteIntent, nonce: bytes) -> bytes:
    """The canonical JSON whose SHA-256 is the challenge: every field of the write, and a nonce.

    Canonical (sorted keys, no spaces) so the same write always hashes the same way and a
    changed checksum or version changes the hash, making the signature fail.
    """
    fields = operation_fields(intent.operation)
    data: dict[str, object] = {
        "type": "cargo-vouch.write",
        "registry": intent.registry,
        "operation": intent.operation.kind,
        "name": fields["name"],
        "vers": fields.get("vers"),
        "cksum": fields.get("cksum"),
        "nonce": websafe_encode(nonce),
    }
    if isinstance(intent.operation, Owners):
        change = intent.owners_change
        data.update(method=change.method if change else None, users=list(change.users) if change else [])
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def verify_assertion(enrollment: Enrollment, assertion: AssertionResponse, client_data_hash: bytes) -> int:
    """Everything but the counter's progress; returns the signature counter.

    A replay of an assertion made for another write (or another nonce) fails here as
    "signature does not verify": the signature covers the challenge.
    """
    credential_id = assertion.credential.get("id")
    if credential_id != enrollment.credential_id:
        shown = short_credential_id(credential_id) if isinstance(credential_id, bytes) else "(none)"
        raise TouchError(f"the assertion came from credential {shown}, not the enrolled one: run 'cargo vouch enroll'")
    try:
        enrollment.public_key.verify(assertion.auth_data + client_data_hash, assertion.signature)
    except (InvalidSignature, ValueError, TypeError, NotImplementedError):
        raise TouchError("signature does not verify") from None
    auth_data: AuthenticatorData = assertion.auth_data
    if auth_data.rp_id_hash != hashlib.sha256(enrollment.rp_id.encode()).digest():
        raise TouchError(f"the assertion is not for {enrollment.rp_id!r}")
    if not auth_data.is_user_present():
        raise TouchError("no user presence (the key was not touched)")
    return auth_data.counter
