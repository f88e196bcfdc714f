"""The enrolled security key: public data only, kept beside the config file.

The credential id and public key (in `fido2-enrollment.json`), and the highest signature
counter seen, so that a counter that does not go up (a replayed assertion or a cloned
authenticator) is refused, across restarts too. The private key never leaves the
authenticator.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from fido2 import cbor
from fido2.cose import CoseKey, UnsupportedKey
from fido2.utils import websafe_decode, websafe_encode

from cargo_vouch import paths
from cargo_vouch.ca.files import write_atomic
from cargo_vouch.errors import VouchError
from cargo_vouch.logs import get_logger

logger = get_logger(__name__)

RP_ID = "cargo-vouch"
ENROLLMENT_FILE = "fido2-enrollment.json"
_FORMAT_VERSION = 1


class TouchError(VouchError):
    """A touch that did not happen or did not verify, or an enrollment that cannot be used;
    the message is one line for the user."""


@dataclass
class Enrollment:
    """The enrolled credential: public data only, the private key stays on the authenticator."""

    credential_id: bytes
    public_key: CoseKey
    rp_id: str = RP_ID
    created: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))
    #: The authenticator model, when it told us (many send zeros with "none" attestation).
    aaguid: str | None = None
    #: The highest signature counter seen, so a restart does not forget it.
    last_counter: int = 0
    #: Where it was loaded from or saved to; `CounterStore` records counters there.
    path: Path | None = field(default=None, compare=False, repr=False)

    def short_id(self) -> str:
        return short_credential_id(self.credential_id)

    def to_json(self) -> bytes:
        data = {
            "version": _FORMAT_VERSION,
            "rp_id": self.rp_id,
            "credential_id": websafe_encode(self.credential_id),
            "public_key": websafe_encode(cbor.encode(dict(self.public_key))),
            "created": self.created.isoformat(),
            "aaguid": self.aaguid,
            "last_counter": self.last_counter,
        }
        return (json.dumps(data, indent=2) + "\n").encode()

    @classmethod
    def from_json(cls, raw: bytes, path: Path | None = None) -> Enrollment:
        """Raises ValueError (or KeyError/TypeError) on anything malformed."""
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if data.get("version") != _FORMAT_VERSION:
            raise ValueError(f"unknown version {data.get('version')!r}")
        rp_id, created, aaguid, counter = data["rp_id"], data["created"], data.get("aaguid"), data["last_counter"]
        if not isinstance(rp_id, str) or not isinstance(created, str) or not isinstance(aaguid, str | None):
            raise ValueError("rp_id, created and aaguid must be strings")
        if not isinstance(counter, int) or isinstance(counter, bool) or counter < 0:
            raise ValueError("last_counter must be a non-negative integer")
        credential_id = websafe_decode(data["credential_id"])
        decoded = cbor.decode(websafe_decode(data["public_key"]))
        if not isinstance(decoded, Mapping):
            raise ValueError("public_key is not a COSE key")
        public_key = CoseKey.parse(decoded)
        if isinstance(public_key, UnsupportedKey):
            raise ValueError(f"unsupported key algorithm {decoded.get(3)!r}")
        return cls(credential_id, public_key, rp_id, datetime.fromisoformat(created), aaguid, counter, path)


def short_credential_id(credential_id: bytes) -> str:
    """Enough hex to tell credentials apart in a message."""
    text = credential_id.hex()
    return text if len(text) <= 16 else text[:16] + "..."


def enrollment_path(config: str | os.PathLike[str] | None = None) -> Path:
    """Beside the config file (`--config` > `$CARGO_VOUCH_CONFIG` > the per-user one),
    so a config and the key that guards its writes travel together."""
    return paths.config_path(config)[0].parent / ENROLLMENT_FILE


def load_enrollment(path: Path | None = None) -> Enrollment | None:
    """None when nobody enrolled; a corrupt file is a TouchError, never a silent "no touch"."""
    path = path or enrollment_path()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise TouchError(f"{path}: cannot read the FIDO2 enrollment: {exc.strerror or exc}") from None
    try:
        return Enrollment.from_json(raw, path)
    except Exception as exc:  # whatever is malformed, the user gets the same clear line
        reason = f"missing {exc}" if isinstance(exc, KeyError) else (str(exc).splitlines() or [type(exc).__name__])[0]
        raise TouchError(
            f"{path}: not a valid cargo-vouch FIDO2 enrollment ({reason}); run 'cargo vouch enroll --force'"
        ) from None


def save_enrollment(enrollment: Enrollment, path: Path | None = None) -> Path:
    """Atomically, mode 0600: nothing in it is secret, but nobody else needs it either."""
    path = path or enrollment.path or enrollment_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, enrollment.to_json(), 0o600)
    enrollment.path = path
    return path


class CounterStore:
    """The highest signature counter seen per credential, for this proxy process and on disk.

    A counter that does not go up means a replayed assertion or a cloned authenticator.
    Kept in memory (so editing the file back does not help within a run) and as
    `last_counter` in the enrollment file (so a restart does not forget it).

    Authenticators that implement no counter always send 0: 0 after 0 is allowed, since
    refusing it would lock such keys out; 0 after anything higher is refused.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[bytes, int] = {}

    def advance(self, enrollment: Enrollment, counter: int) -> None:
        """Record `counter`, or raise TouchError if it does not go up."""
        with self._lock:
            last = max(self._seen.get(enrollment.credential_id, 0), enrollment.last_counter)
            if counter <= last and not (counter == 0 and last == 0):
                raise TouchError(
                    f"signature counter went from {last} to {counter}: a replayed or cloned authenticator"
                )
            self._seen[enrollment.credential_id] = counter
            enrollment.last_counter = counter
            if enrollment.path is not None:
                self._persist(enrollment.path, enrollment.credential_id, counter)

    @staticmethod
    def _persist(path: Path, credential_id: bytes, counter: int) -> None:
        """Only into the file of the same credential: a re-enrollment meanwhile wins."""
        try:
            current = load_enrollment(path)
            if current is None or current.credential_id != credential_id or current.last_counter >= counter:
                return
            current.last_counter = counter
            save_enrollment(current, path)
        except (TouchError, OSError) as exc:
            # The touch itself verified; only the across-restart memory is weaker now.
            logger.warning(f"could not record the FIDO2 signature counter in {path}: {exc}")


#: One per proxy process.
COUNTERS = CounterStore()


