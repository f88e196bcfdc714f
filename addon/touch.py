"""A FIDO2 user-presence check ("touch") before a write goes to a registry.

With `touch = true` a registry's writes (publish, yank, unyank, owners) need a fresh
assertion from the security key enrolled with `cargo vouch enroll`. A stolen Vouch session
or a compromised build script can then still read, but cannot publish without a human
touching the key.

The challenge binds the exact write: its hash covers the registry, operation, crate, version
and checksum plus a fresh nonce, so an assertion made for one write never verifies for
another. Only public data is stored (the credential id and public key, in
`fido2-enrollment.json` beside the config file): the private key never leaves the
authenticator.

Tests and non-HID transports swap the device through `$CARGO_VOUCH_FIDO_DEVICE`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import hashlib
import importlib
import json
import logging
import os
import secrets
import socket
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from fido2 import cbor
from fido2.cose import CoseKey, UnsupportedKey
from fido2.ctap import CtapDevice, CtapError
from fido2.ctap2 import AssertionResponse, AttestationResponse, Ctap2
from fido2.ctap2.base import args as ctap_args
from fido2.utils import websafe_decode, websafe_encode
from fido2.webauthn import AuthenticatorData

from addon import paths
from ca.authority import write_atomic

logger = logging.getLogger("cargo-vouch")

RP_ID = "cargo-vouch"
ENROLLMENT_FILE = "fido2-enrollment.json"
#: `module:callable` returning a `CtapDevice`: for tests and for non-HID transports.
DEVICE_ENV = "CARGO_VOUCH_FIDO_DEVICE"
WRITE_OPERATIONS = ("publish", "yank", "unyank", "owners")
#: How long a cancelled wait may take to end once the device was told to stop.
CANCEL_GRACE_SECONDS = 5.0
_FORMAT_VERSION = 1
#: Credential algorithms asked for at enrollment, best first: ES256, then EdDSA.
_ALGORITHMS = (-7, -8)


class TouchError(Exception):
    """A touch that did not happen or did not verify; the message is one line for the user."""


@dataclass(frozen=True)
class WriteIntent:
    """One write, as the user would describe it; what the touch is bound to."""

    registry: str
    operation: str  # "publish" | "yank" | "unyank" | "owners"
    name: str
    vers: str | None = None
    cksum: str | None = None
    #: For an owners change: PUT adds, DELETE removes these users.
    method: str | None = None
    users: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.operation not in WRITE_OPERATIONS:
            raise ValueError(f"not a write operation: {self.operation!r}")

    def describe(self) -> str:
        """For the prompt: "publish hello v0.1.0 to corp", "change owners of hello on corp"."""
        crate = f"{self.name} v{self.vers}" if self.vers else self.name
        if self.operation == "publish":
            return f"publish {crate} to {self.registry}"
        if self.operation == "owners":
            users = ", ".join(self.users)
            if users and self.method == "PUT":
                return f"add {users} to the owners of {self.name} on {self.registry}"
            if users and self.method == "DELETE":
                return f"remove {users} from the owners of {self.name} on {self.registry}"
            return f"change owners of {self.name} on {self.registry}"
        return f"{self.operation} {crate} on {self.registry}"


def client_data(intent: WriteIntent, nonce: bytes) -> bytes:
    """The canonical JSON whose SHA-256 is the challenge: every field of the write, and a nonce.

    Canonical (sorted keys, no spaces) so the same write always hashes the same way and a
    changed checksum or version changes the hash, making the signature fail.
    """
    data: dict[str, object] = {
        "type": "cargo-vouch.write",
        "registry": intent.registry,
        "operation": intent.operation,
        "name": intent.name,
        "vers": intent.vers,
        "cksum": intent.cksum,
        "nonce": websafe_encode(nonce),
    }
    if intent.operation == "owners":
        data.update(method=intent.method, users=list(intent.users))
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# ---------------------------------------------------------------- enrollment


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

    def last(self, enrollment: Enrollment) -> int:
        with self._lock:
            return max(self._seen.get(enrollment.credential_id, 0), enrollment.last_counter)

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
            logger.warning("cargo-vouch: could not record the FIDO2 signature counter in %s: %s", path, exc)


#: One per proxy process.
COUNTERS = CounterStore()


# ---------------------------------------------------------------- the device


def open_device() -> CtapDevice:
    """The first FIDO2 key on USB, or what `$CARGO_VOUCH_FIDO_DEVICE` (`module:callable`) returns."""
    spec = os.environ.get(DEVICE_ENV)
    if spec:
        module_name, _, attribute = spec.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError, ValueError) as exc:
            raise TouchError(f"{DEVICE_ENV}={spec!r}: expected MODULE:CALLABLE ({exc})") from None
        device: CtapDevice = factory()
        return device
    try:
        from fido2.hid import CAPABILITY, CtapHidDevice

        found = list(CtapHidDevice.list_devices())
    except Exception as exc:  # an unsupported platform or no access to the HID devices
        raise TouchError(f"cannot look for FIDO2 authenticators: {exc}") from None
    chosen = next((d for d in found if d.capabilities & CAPABILITY.CBOR), None)
    for other in found:
        if other is not chosen:
            other.close()
    if chosen is not None:
        return chosen
    if found:
        raise TouchError("the security key found speaks only U2F: cargo-vouch needs a FIDO2 (CTAP2) key")
    raise TouchError("no FIDO2 authenticator found: plug in your security key")


def _ctap2(device: CtapDevice) -> Ctap2:
    try:
        return Ctap2(device)
    except ValueError:
        raise TouchError("the security key speaks only U2F: cargo-vouch needs a FIDO2 (CTAP2) key") from None


def _ctap_failure(exc: CtapError) -> TouchError:
    """The authenticator's refusals, in words."""
    code = exc.code
    if code in (CtapError.ERR.NO_CREDENTIALS, CtapError.ERR.INVALID_CREDENTIAL):
        return TouchError(
            "this security key does not hold the enrolled credential: plug in the enrolled key or run "
            "'cargo vouch enroll'"
        )
    if code in (CtapError.ERR.USER_ACTION_TIMEOUT, CtapError.ERR.ACTION_TIMEOUT):
        return TouchError("no touch: the security key stopped waiting")
    if code == CtapError.ERR.OPERATION_DENIED:
        return TouchError("the security key refused the request")
    if code in (CtapError.ERR.PUAT_REQUIRED, CtapError.ERR.PIN_INVALID, CtapError.ERR.PIN_BLOCKED):
        return TouchError(f"the security key wants its PIN ({code}), which cargo-vouch does not ask for")
    return TouchError(f"the security key answered {code}")


# ---------------------------------------------------------------- enroll


def enroll(device: CtapDevice, rp_id: str = RP_ID, user_name: str | None = None) -> Enrollment:
    """CTAP2 makeCredential for a non-resident credential; blocks until the key is touched.

    Checks what can be checked without trusting a vendor's attestation roots: the credential
    is for our RP id, the user was present, and a self-attestation signature (if given)
    verifies with the new public key.
    """
    user_name = user_name or f"{getpass.getuser()}@{socket.gethostname()}"
    client_data_hash = hashlib.sha256(secrets.token_bytes(32)).digest()
    try:
        attestation: AttestationResponse = _ctap2(device).make_credential(
            client_data_hash,
            {"id": rp_id, "name": "cargo-vouch"},
            {"id": hashlib.sha256(user_name.encode()).digest()[:16], "name": user_name, "displayName": user_name},
            [{"type": "public-key", "alg": alg} for alg in _ALGORITHMS],
        )
    except CtapError as exc:
        raise _ctap_failure(exc) from None
    auth_data = attestation.auth_data
    credential = auth_data.credential_data
    if auth_data.rp_id_hash != hashlib.sha256(rp_id.encode()).digest():
        raise TouchError("the security key made a credential for another relying party")
    if not auth_data.is_user_present():
        raise TouchError("no user presence (the key was not touched)")
    if credential is None:
        raise TouchError("the security key returned no credential")
    public_key = credential.public_key
    if isinstance(public_key, UnsupportedKey):
        raise TouchError(f"the security key chose an unsupported algorithm {public_key.get(3)!r}")
    statement = attestation.att_stmt
    if attestation.fmt == "packed" and "x5c" not in statement:  # self attestation
        try:
            public_key.verify(auth_data + client_data_hash, statement["sig"])
        except (InvalidSignature, ValueError, KeyError, TypeError):
            raise TouchError("the security key's self-attestation does not verify") from None
    return Enrollment(
        credential_id=credential.credential_id,
        public_key=public_key,
        rp_id=rp_id,
        aaguid=str(credential.aaguid) if credential.aaguid else None,
        last_counter=auth_data.counter,
    )


# ---------------------------------------------------------------- touch


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


class _Cancelled(Exception):
    """The wait was given up; the worker says so instead of returning."""


#: One touch at a time per process: a key answers one request at a time (a queued write
#: waits here; its prompt appears when its turn comes, its `timeout` counts from its start).
_DEVICE_LOCK = threading.Lock()


def _get_assertion(
    device_factory: Callable[[], CtapDevice],
    rp_id: str,
    client_data_hash: bytes,
    credential_id: bytes,
    cancel: threading.Event,
    announce: Callable[[], object],
) -> AssertionResponse:
    """Runs in a worker thread; `cancel` makes the device stop waiting (CTAPHID_CANCEL).

    `announce` prints the prompt once this write has the key, not before: with writes
    queued, an earlier prompt would name one write while the key signs another's challenge.
    """
    while not _DEVICE_LOCK.acquire(timeout=0.1):
        if cancel.is_set():
            raise _Cancelled
    try:
        if cancel.is_set():
            raise _Cancelled
        announce()
        device = device_factory()
        try:
            descriptor = {"type": "public-key", "id": credential_id}
            request = ctap_args(rp_id, client_data_hash, [descriptor], None, {"up": True})
            try:
                response = _ctap2(device).send_cbor(Ctap2.CMD.GET_ASSERTION, request, event=cancel)
            except CtapError as exc:
                if cancel.is_set():
                    raise _Cancelled from None
                raise _ctap_failure(exc) from None
        finally:
            device.close()
    finally:
        _DEVICE_LOCK.release()
    if 1 not in response:  # CTAP2 lets a key omit the credential when the allow list has one
        response = {**response, 1: descriptor}
    return AssertionResponse.from_dict(response)


async def require_touch(
    intent: WriteIntent,
    enrollment: Enrollment,
    device_factory: Callable[[], CtapDevice] = open_device,
    *,
    on_wait: Callable[[str], None],
    timeout: float = 30.0,
    counters: CounterStore = COUNTERS,
) -> int:
    """Wait for a touch that approves exactly `intent`; return the new signature counter.

    The device is driven in a worker thread so the proxy keeps serving meanwhile. On
    timeout (or if the caller is cancelled) the device is told to stop waiting and the
    thread is waited for, so no thread is left blocked on the key. Raises TouchError.
    """
    nonce = secrets.token_bytes(32)
    client_data_hash = hashlib.sha256(client_data(intent, nonce)).digest()
    cancel = threading.Event()
    loop = asyncio.get_running_loop()
    prompt = f"touch your key to {intent.describe()}"
    worker = asyncio.ensure_future(
        asyncio.to_thread(
            _get_assertion, device_factory, enrollment.rp_id, client_data_hash, enrollment.credential_id, cancel,
            lambda: _on_loop(loop, on_wait, prompt),
        )
    )
    try:
        assertion = await asyncio.wait_for(asyncio.shield(worker), timeout)
    except TimeoutError:
        await _stop(worker, cancel)
        raise TouchError(f"no touch within {timeout:g} s; the write was not sent") from None
    except asyncio.CancelledError:
        await _stop(worker, cancel)
        raise
    except TouchError:
        raise
    except _Cancelled:  # only when cancel was set, which happens above
        raise TouchError("the touch was cancelled") from None
    except Exception as exc:  # the device went away, spoke garbage, ...
        raise TouchError(f"security key error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    counter = verify_assertion(enrollment, assertion, client_data_hash)
    await asyncio.to_thread(counters.advance, enrollment, counter)
    return counter


def _on_loop(loop: asyncio.AbstractEventLoop, on_wait: Callable[[str], None], prompt: str) -> None:
    """From the worker thread: print the prompt on the event loop, and return once it is out."""
    printed = threading.Event()

    def show() -> None:
        try:
            on_wait(prompt)
        finally:
            printed.set()

    loop.call_soon_threadsafe(show)
    printed.wait(5)


async def _stop(worker: asyncio.Future[AssertionResponse], cancel: threading.Event) -> None:
    """Make the device stop waiting and let the thread end, within a bounded time."""
    cancel.set()
    with contextlib.suppress(BaseException):
        await asyncio.wait_for(asyncio.shield(worker), CANCEL_GRACE_SECONDS)
    if not worker.done():
        logger.warning("cargo-vouch: the security key did not stop waiting within %g s", CANCEL_GRACE_SECONDS)
        worker.add_done_callback(lambda f: f.cancelled() or f.exception())  # no "never retrieved" warning


# ---------------------------------------------------------------- `cargo vouch enroll`


def cmd_enroll(args: argparse.Namespace) -> int:
    path = enrollment_path(getattr(args, "config", None))
    if not args.force:
        try:
            existing = load_enrollment(path)
        except TouchError as exc:
            print(f"cargo-vouch: {exc}", file=sys.stderr)
            return 1
        if existing is not None:
            print(
                f"cargo-vouch: {path} already enrolls credential {existing.short_id()}; "
                "run 'cargo vouch enroll --force' to replace it",
                file=sys.stderr,
            )
            return 1
    try:
        device = open_device()
        try:
            print("touch your key to enroll it for cargo-vouch", flush=True)
            enrollment = enroll(device)
        finally:
            device.close()
    except TouchError as exc:
        print(f"cargo-vouch: {exc}", file=sys.stderr)
        return 1
    save_enrollment(enrollment, path)
    print(f"enrolled credential {enrollment.short_id()} in {path}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `enroll`; `--config` is SUPPRESSed so a top-level `--config` is not overwritten."""
    parser = subparsers.add_parser(
        "enroll",
        help="enroll a FIDO2 security key for registries with touch = true",
        description="Create a credential on a FIDO2 security key; writes to registries with "
        "touch = true then need a touch of that key. Stores only public data, beside the config file.",
    )
    parser.add_argument("--force", action="store_true", help="replace an existing enrollment")
    parser.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help="cargo-vouch config file")
    parser.set_defaults(func=cmd_enroll)
