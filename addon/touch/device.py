"""The security key itself: finding it, enrolling a credential, and waiting for a touch.

CTAP2 over USB HID (python-fido2). The device is driven in a worker thread so the proxy
keeps serving while a key waits for its touch, one request at a time per process, and a
wait given up is cancelled on the device (CTAPHID_CANCEL) rather than left blocking.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import hashlib
import secrets
import socket
import threading
from collections.abc import Callable

from cryptography.exceptions import InvalidSignature
from fido2.cose import UnsupportedKey
from fido2.ctap import CtapDevice, CtapError
from fido2.ctap2 import AssertionResponse, AttestationResponse, Ctap2
from fido2.ctap2.base import args as ctap_args

from cargo_vouch.logs import get_logger
from cargo_vouch.touch.challenge import WriteIntent, client_data, verify_assertion
from cargo_vouch.touch.enrollment import COUNTERS, RP_ID, CounterStore, Enrollment, TouchError

logger = get_logger(__name__)

#: How long a cancelled wait may take to end once the device was told to stop.
CANCEL_GRACE_SECONDS = 5.0
#: Credential algorithms asked for at enrollment, best first: ES256, then EdDSA.
_ALGORITHMS = (-7, -8)


def open_device() -> CtapDevice:
    """The first FIDO2 key on USB. Looked up by module attribute at each use (`device.open_device`),
    so the tests' software authenticator can stand in for it."""
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
        logger.warning(f"the security key did not stop waiting within {CANCEL_GRACE_SECONDS:g} s")
        worker.add_done_callback(lambda f: f.cancelled() or f.exception())  # no "never retrieved" warning


