"""The last check before a write leaves: with `touch = true`, a human touches the key.

A leaked session, or a build script or dependency that talks to the proxy, can read the
registry — that is what the proxy is for — but with `touch = true` it cannot publish,
yank or change owners: each of those needs a FIDO2 user-presence assertion over that very
operation (registry, crate, version, checksum) from the enrolled authenticator.
"""

from __future__ import annotations

import logging

from addon.matching import Match, Operation
from addon.publish_body import PublishedCrate
from addon.state import VouchState

logger = logging.getLogger("cargo-vouch")


class WriteRefused(Exception):
    """The write is answered with 403 and this line; nothing reaches the registry."""


class WriteGate:
    def __init__(self, state: VouchState) -> None:
        self.state = state

    async def confirm(self, match: Match, method: str) -> None:
        """yank, unyank and owners changes; listing owners changes nothing and needs no touch."""
        if match.operation is Operation.OWNERS and method == "GET":
            return
        name, vers = (match.crate + ("", ""))[:2]
        await self._touch(match, name, vers or None, None)

    async def confirm_publish(self, match: Match, crate: PublishedCrate) -> None:
        await self._touch(match, crate.name, crate.vers, crate.cksum)

    async def confirm_owners(self, match: Match, method: str, users: tuple[str, ...]) -> None:
        """Adding or removing owners, bound to the users named (the relay read the body)."""
        await self._touch(match, match.crate[0], None, None, method=method, users=users)

    async def _touch(
        self, match: Match, name: str, vers: str | None, cksum: str | None,
        method: str | None = None, users: tuple[str, ...] = (),
    ) -> None:
        registry = match.registry.config
        if not registry.touch:
            return
        from addon import (
            touch,  # python-fido2: loaded only where a registry asks for touch
        )

        intent = touch.WriteIntent(registry.name, match.operation.value, name, vers, cksum, method, users)
        try:
            # Read on every write, so that `cargo vouch enroll --force` takes effect at once.
            config_path = self.state.config.path if self.state.config else None
            enrollment = touch.load_enrollment(touch.enrollment_path(config_path))
            if enrollment is None:
                raise touch.TouchError("no security key is enrolled: run 'cargo vouch enroll'")
            # require_touch serialises prompts itself: one authenticator, one prompt at a time.
            await touch.require_touch(
                intent, enrollment, touch.open_device, timeout=registry.touch_timeout,
                on_wait=lambda line: logger.warning(f"cargo-vouch: {line}"),
            )
        except touch.TouchError as exc:
            raise WriteRefused(
                f"cargo-vouch: {intent.describe()} needs a touch of the enrolled security key "
                f"(touch = true in [registries.{registry.name}]): {exc}"
            ) from None
        logger.info(f"cargo-vouch: touch confirmed: {intent.describe()}")
