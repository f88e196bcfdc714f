"""Tokens in memory only, reused by Cargo's own rules, fetched once however many ask.

Cargo's rules (`cargo::util::auth`): an `expires` token is reused while it is valid for
more than 60 s more; a `session` token until the registry refuses it; a `never` token
once. A build that asks for 50 crates at once must still start just one provider.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import jwt

from cargo_vouch.config import is_header_safe
from cargo_vouch.protocol import Expires, Never, Operation, Provider, ProviderError, Read, Session, Token

#: Cargo refreshes an `expires` token this long before it runs out.
EXPIRY_MARGIN_SECONDS = 60


def unverified_claims(value: str) -> dict[str, object]:
    """A JWT's claims without checking its signature: only ever for what we show or for
    when to ask again, never for a decision about trust. {} for a token that is no JWT."""
    try:
        claims = jwt.decode(value, options={"verify_signature": False})
    except jwt.PyJWTError:
        return {}
    return claims if isinstance(claims, dict) else {}


@dataclass(frozen=True)
class IssuedToken:
    """A token plus what may be logged about it (never the value)."""

    token: Token
    subject: str | None
    expires_at: int | None

    @classmethod
    def describe(cls, token: Token) -> IssuedToken:
        """`sub` and `exp` from a JWT's claims, for the log line and `doctor`."""
        claims = unverified_claims(token.value)
        subject = claims.get("sub")
        exp = claims.get("exp")
        expires_at = token.expiration
        if expires_at is None and isinstance(exp, int) and not isinstance(exp, bool):
            expires_at = exp
        return cls(token, subject if isinstance(subject, str) else None, expires_at)

    def seconds_left(self, now: float) -> int | None:
        return None if self.expires_at is None else int(self.expires_at - now)


#: (registry, operation kind), or (registry, None) for an operation-independent token.
CacheKey = tuple[str, str | None]


class TokenCache:
    """One cache per proxy; keyed by registry and, unless operation-independent, operation."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._tokens: dict[CacheKey, IssuedToken] = {}
        self._pending: dict[CacheKey, asyncio.Future[IssuedToken]] = {}
        #: Provider calls made, for benchmarks and tests that count them.
        self.provider_calls = 0

    def _usable(self, issued: IssuedToken) -> bool:
        match issued.token.cache:
            case Session():
                return True
            case Expires(expiration):
                return self._clock() + EXPIRY_MARGIN_SECONDS < expiration
        return False

    def cached(self, registry: str, operation: Operation) -> IssuedToken | None:
        """The fast path: a valid cached token, without awaiting anything."""
        for key in ((registry, None), (registry, operation.kind)):
            issued = self._tokens.get(key)
            if issued is not None and self._usable(issued):
                return issued
        return None

    async def get(self, registry: str, provider: Provider, operation: Operation) -> IssuedToken:
        issued = self.cached(registry, operation)
        if issued is not None:
            return issued
        # Writes carry per-request fields (name, vers, cksum): they never share a call.
        if not isinstance(operation, Read):
            return await self._fetch(registry, provider, operation)
        key: CacheKey = (registry, operation.kind)
        task = self._pending.get(key)
        joined = task is not None
        if task is None:
            # A task of its own, so a client that hangs up does not cancel the others' token.
            task = asyncio.ensure_future(self._fetch(registry, provider, operation))
            self._pending[key] = task
            task.add_done_callback(lambda _: self._pending.pop(key, None))
        issued = await asyncio.shield(task)
        if joined and isinstance(issued.token.cache, Never):
            # A one-use token belongs to the request that asked for it; the others ask again.
            return await self._fetch(registry, provider, operation)
        return issued

    async def _fetch(self, registry: str, provider: Provider, operation: Operation) -> IssuedToken:
        self.provider_calls += 1
        token = await provider.get(operation)
        if not is_header_safe(token.value) or token.value != token.value.strip():
            # Never quoted: the value is the token. (h11, for one, would quote it back.)
            raise ProviderError(
                "other", "the provider's token has characters an HTTP header cannot carry, or spaces at an end"
            )
        issued = IssuedToken.describe(token)
        # Cargo reuses an operation-bound token only for reads: a publish token names its crate.
        reusable = token.operation_independent or isinstance(operation, Read)
        if not isinstance(token.cache, Never) and reusable:
            self._tokens[(registry, None if token.operation_independent else operation.kind)] = issued
        return issued

    def refused(self, registry: str, token_value: str) -> bool:
        """The registry answered 401/403 to this token: never offer it again. Whether it
        was still on offer (the first refusal of it, not one of the requests in flight)."""
        found = False
        for key, issued in list(self._tokens.items()):
            if key[0] == registry and issued.token.value == token_value:
                del self._tokens[key]
                found = True
        return found
