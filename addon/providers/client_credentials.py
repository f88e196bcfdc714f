"""The provider for machines without a YubiKey: OAuth 2.0 client credentials (RFC 6749 §4.4).

CI has no hardware session to take a token from, so it asks the Vouch server's token
endpoint directly, authenticating as a registered client: with a secret from the
environment (client_secret_basic, RFC 6749 §2.3.1) or with a JWT signed by its private
key (private_key_jwt, RFC 7523). The endpoint is found by OIDC discovery at the
configured issuer, and both requests go straight to the server over verified TLS, never
through a proxy and never along a redirect: what they carry is a credential.

The answer is an `expires` token, so the proxy's TokenCache asks again only when fewer
than 60 s of its lifetime are left: one token request per lifetime, however many
requests Cargo makes. Nothing here logs, and no message quotes the secret, the signed
assertion or the token.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import socket
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

import jwt

from cargo_vouch.ca.authority import system_roots
from cargo_vouch.config import (
    ClientCredentialsConfig,
    RegistryConfig,
    https_url_problem,
    load_private_key,
)
from cargo_vouch.direct_https import CredentialNotSent, direct_opener, verified_context
from cargo_vouch.protocol import Expires, Operation, ProviderError, Session, Token
from cargo_vouch.providers.token_cache import unverified_claims

#: `client_assertion_type` of private_key_jwt (RFC 7523 §2.2).
JWT_BEARER_ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: Lifetime of a client assertion: long enough for clock skew, too short to be worth stealing.
ASSERTION_LIFETIME = 60
#: Bigger answers than this are not a discovery document or a token response.
_MAX_BODY = 1 << 20
#: OAuth errors (RFC 6749 §5.2) that mean the server did not accept the client's credential.
_CLIENT_ERRORS = {"invalid_client", "unauthorized_client"}


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes


class ClientCredentialsProvider:
    """`[registries.NAME.client-credentials]`: a token from the client-credentials grant."""

    def __init__(self, registry: RegistryConfig, upstream_ca: Path | None = None) -> None:
        assert registry.client_credentials is not None
        self.registry = registry
        self.config: ClientCredentialsConfig = registry.client_credentials
        self.upstream_ca = upstream_ca
        self.description = f"client-credentials (client `{self.config.client_id}` at {self.config.issuer})"
        if self.config.client_secret_env is not None:
            self._check_hint = f"check {self.config.client_secret_env}"
            self.login_hint = f"set {self.config.client_secret_env} to the client secret of `{self.config.client_id}`"
        else:
            self._check_hint = (
                f"check that the public key of {self.config.private_key} is registered for `{self.config.client_id}`"
            )
            self.login_hint = self._check_hint
        #: The discovered token endpoint; fixed for the provider's lifetime (one config).
        self._token_endpoint: str | None = None

    async def get(self, operation: Operation) -> Token:
        """One token for every operation: the grant knows nothing of crates or operations."""
        timeout = self.registry.provider_timeout
        try:
            async with asyncio.timeout(timeout):
                if self._token_endpoint is None:
                    self._token_endpoint = await asyncio.to_thread(self._discover, timeout)
                return await asyncio.to_thread(self._request_token, self._token_endpoint, timeout)
        except TimeoutError:
            raise ProviderError("other", f"{self.config.issuer} did not answer within {timeout:g} s") from None

    # -- in the worker thread --------------------------------------------------------------
    def _discover(self, timeout: float) -> str:
        """OIDC discovery: the token endpoint, from a document that names our issuer."""
        url = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
        answer = self._call(urllib.request.Request(url, headers={"Accept": "application/json"}), timeout)
        if answer.status != 200:
            raise ProviderError(
                "other", f"{url} answered HTTP {answer.status}; check issuer in [registries.{self.registry.name}.client-credentials]"
            )
        document = _json_object(answer.body)
        if document is None:
            raise ProviderError("other", f"{url} did not answer with a JSON object")
        issuer = document.get("issuer")
        if issuer != self.config.issuer:
            # OIDC Discovery §4.3: otherwise a server could pass itself off as another issuer.
            raise ProviderError(
                "other",
                f"{url} names the issuer {_quoted(issuer)}, not the configured '{self.config.issuer}'; "
                "the two must be identical",
            )
        endpoint = document.get("token_endpoint")
        if not isinstance(endpoint, str):
            raise ProviderError("other", f"{url} names no token_endpoint")
        problem = https_url_problem(endpoint)
        if problem:
            raise ProviderError("other", f"{url}: token_endpoint {problem}")
        return endpoint

    def _request_token(self, endpoint: str, timeout: float) -> Token:
        form = {"grant_type": "client_credentials", "audience": self.config.audience}
        if self.config.scope is not None:
            form["scope"] = self.config.scope
        headers = {"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"}
        secret: str | None = None
        if self.config.client_secret_env is not None:
            secret = os.environ.get(self.config.client_secret_env)
            if not secret:
                raise ProviderError(
                    "not-found",
                    f"{self.config.client_secret_env} is not set: the client-credentials provider for registry "
                    f"`{self.registry.name}` reads its client secret from it",
                )
            headers["Authorization"] = basic_authorization(self.config.client_id, secret)
        else:
            form.update(
                client_id=self.config.client_id,
                client_assertion_type=JWT_BEARER_ASSERTION,
                client_assertion=self._assertion(endpoint),
            )
        request = urllib.request.Request(endpoint, data=urlencode(form).encode(), headers=headers, method="POST")
        answer = self._call(request, timeout)
        if answer.status != 200:
            raise ProviderError("other", self._refusal(endpoint, answer, secret))
        return self._token(endpoint, answer.body)

    def _assertion(self, endpoint: str) -> str:
        """The client's proof of possession of its key (RFC 7523 §3), for this endpoint only."""
        assert self.config.private_key is not None
        try:
            key, algorithm = load_private_key(self.config.private_key)
        except OSError as exc:
            raise ProviderError("other", f"{self.config.private_key}: cannot read: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise ProviderError("other", str(exc)) from None
        now = int(time.time())
        claims = {
            "iss": self.config.client_id,
            "sub": self.config.client_id,
            "aud": endpoint,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
            "jti": secrets.token_urlsafe(24),
        }
        headers = {"kid": self.config.key_id} if self.config.key_id is not None else None
        return jwt.encode(claims, key, algorithm=algorithm, headers=headers)

    def _refusal(self, endpoint: str, answer: _Answer, secret: str | None) -> str:
        """The server's reason (RFC 6749 §5.2) and what to check; never anything we sent."""
        document = _json_object(answer.body) or {}
        error = document.get("error")
        description = document.get("error_description")
        if not isinstance(error, str):
            hint = f"; {self._check_hint}" if answer.status == 401 else ""
            return f"token endpoint {endpoint} answered HTTP {answer.status} to client `{self.config.client_id}`{hint}"
        reason = _printable(error, secret)
        if isinstance(description, str) and description.strip():
            reason += f" ({_printable(description, secret)})"
        if error in _CLIENT_ERRORS:
            hint = self._check_hint
        elif error == "invalid_scope":
            hint = f"check scope in [registries.{self.registry.name}.client-credentials]"
        elif error in ("invalid_target", "invalid_request"):
            hint = f"check audience and scope in [registries.{self.registry.name}.client-credentials]"
        else:
            hint = f"HTTP {answer.status}"
        return f"token endpoint {endpoint} refused client `{self.config.client_id}`: {reason}; {hint}"

    def _token(self, endpoint: str, body: bytes) -> Token:
        document = _json_object(body)
        value = document.get("access_token") if document else None
        if document is None or not isinstance(value, str) or not value:
            raise ProviderError("other", f"token endpoint {endpoint} answered without an access_token")
        token_type = document.get("token_type")
        if isinstance(token_type, str) and token_type.lower() != "bearer":
            raise ProviderError(
                "other", f"token endpoint {endpoint} issued a {_printable(token_type)} token; Cargo can only send bearer tokens"
            )
        expires_in = document.get("expires_in")
        if isinstance(expires_in, (int, float)) and not isinstance(expires_in, bool):
            return Token(value, Expires(int(time.time() + expires_in)), operation_independent=True)
        if expires_in is not None:
            raise ProviderError("other", f"token endpoint {endpoint} answered with an expires_in that is not a number")
        # expires_in is only RECOMMENDED (RFC 6749 §5.1). A JWT's own `exp` serves as well;
        # failing that, the token is kept until the registry refuses it, then fetched anew.
        exp = unverified_claims(value).get("exp")
        if isinstance(exp, int) and not isinstance(exp, bool):
            return Token(value, Expires(exp), operation_independent=True)
        return Token(value, Session(), operation_independent=True)

    def _call(self, request: urllib.request.Request, timeout: float) -> _Answer:
        """One HTTPS exchange: direct, verified, no redirects; errors named, never raised raw."""
        host = request.host
        try:
            with direct_opener(self._tls_context()).open(request, timeout=timeout) as response:
                return _Answer(response.status, response.read(_MAX_BODY))
        except urllib.error.HTTPError as exc:
            with exc:
                return _Answer(exc.code, exc.read(_MAX_BODY))
        except CredentialNotSent as exc:
            raise ProviderError("other", str(exc)) from None
        except urllib.error.URLError as exc:
            raise ProviderError("other", f"cannot reach {host}: {_network_reason(exc.reason)}") from None
        except TimeoutError:
            raise ProviderError("other", f"{host} did not answer within {timeout:g} s") from None
        except (OSError, ValueError) as exc:  # a connection reset mid-answer, a malformed status line
            raise ProviderError("other", f"exchange with {host} failed: {_network_reason(exc)}") from None

    def _tls_context(self) -> ssl.SSLContext:
        """The roots the proxy verifies registries with: the system's plus `[proxy] upstream-ca`."""
        context = verified_context(system_roots())
        if self.upstream_ca is not None:
            try:
                context.load_verify_locations(cafile=str(self.upstream_ca))
            except (OSError, ssl.SSLError) as exc:
                raise ProviderError("other", f"{self.upstream_ca}: cannot load upstream-ca: {exc}") from None
        return context


def basic_authorization(client_id: str, secret: str) -> str:
    """RFC 6749 §2.3.1: both parts form-urlencoded before base64, so a ':' in either survives."""
    pair = f"{_form_encode(client_id)}:{_form_encode(secret)}"
    return "Basic " + base64.b64encode(pair.encode()).decode("ascii")


def _form_encode(value: str) -> str:
    return quote(value, safe="").replace("%20", "+")


def _json_object(body: bytes) -> dict[str, object] | None:
    try:
        value = json.loads(body)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _printable(text: str, secret: str | None = None, limit: int = 200) -> str:
    """A server-supplied string fit for one log line (and, to be safe, without our secret)."""
    if secret:
        text = text.replace(secret, "<redacted>")
    text = "".join(ch if " " <= ch <= "~" else "?" for ch in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _quoted(value: object) -> str:
    return f"'{_printable(value)}'" if isinstance(value, str) else "none"


def _network_reason(reason: object) -> str:
    if isinstance(reason, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({reason.verify_message}); add its CA to [proxy] upstream-ca"
    if isinstance(reason, ssl.SSLError):
        return f"TLS failed ({reason.reason or reason})"
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, socket.gaierror):
        return "host name not found"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    return str(reason) or type(reason).__name__
