"""The last check before a write leaves: with `touch = true`, a human touches the key.

A leaked session, or a build script or dependency that talks to the proxy, can read the
registry — that is what the proxy is for — but with `touch = true` it cannot publish,
yank or change owners: each of those needs a FIDO2 user-presence assertion over that very
operation (registry, crate, version, checksum, or the users an owners change names) from
the enrolled authenticator. Which writes need one is the policy's decision; this carries
it out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cargo_vouch.logs import get_logger
from cargo_vouch.proxy.routing import RegistryRoutes
from cargo_vouch.proxy.state import VouchState

if TYPE_CHECKING:  # python-fido2 is loaded only where a registry asks for touch
    from cargo_vouch.touch.challenge import WriteIntent

logger = get_logger(__name__)


class WriteRefused(Exception):
    """The write is answered with 403 and this line; nothing reaches the registry."""


class WriteGate:
    def __init__(self, state: VouchState) -> None:
        self.state = state

    async def confirm(self, registry: RegistryRoutes, intent: WriteIntent) -> None:
        """Returns once the enrolled key approved exactly `intent`; raises WriteRefused."""
        from cargo_vouch.touch import device, enrollment
        from cargo_vouch.touch.enrollment import TouchError

        config = registry.config
        try:
            # Read on every write, so that `cargo vouch enroll --force` takes effect at once.
            config_path = self.state.config.path if self.state.config else None
            enrolled = enrollment.load_enrollment(enrollment.enrollment_path(config_path))
            if enrolled is None:
                raise TouchError("no security key is enrolled: run 'cargo vouch enroll'")
            # require_touch serialises prompts itself: one authenticator, one prompt at a time.
            await device.require_touch(
                intent, enrolled, device.open_device, timeout=config.touch_timeout,
                on_wait=lambda line: logger.warning(line),
            )
        except TouchError as exc:
            raise WriteRefused(
                f"cargo-vouch: {intent.describe()} needs a touch of the enrolled security key "
                f"(touch = true in [registries.{config.name}]): {exc}"
            ) from None
        logger.info(f"touch confirmed: {intent.describe()}")
