"""HTTPS requests that carry a credential, made by the proxy itself.

A token or a client secret goes straight to the server it is meant for: no proxy (an
`HTTPS_PROXY` may well point at this very proxy), TLS verified against the roots given,
and no redirect followed, since urllib would carry the `Authorization` header along to
wherever the redirect points.
"""

from __future__ import annotations

import ssl
import urllib.request
from pathlib import Path


class CredentialNotSent(Exception):
    """The request would have taken its credential where it must not go (plain HTTP, or
    wherever a redirect points), so it was not made."""


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        raise CredentialNotSent(f"{req.full_url} redirected ({code}); cargo-vouch does not follow redirects with credentials")


class _RefusePlainHttp(urllib.request.HTTPHandler):
    """In place of urllib's own HTTP handler: a credential never travels in clear text."""

    def http_open(self, req):  # type: ignore[no-untyped-def]
        raise CredentialNotSent(f"{req.full_url} is not https; cargo-vouch sends credentials only over verified TLS")


def verified_context(*cafiles: Path) -> ssl.SSLContext:
    """TLS for a credential: certificate and host name verified against exactly `cafiles`.

    Unlike `ssl.create_default_context`, it never writes session keys to the file
    `SSLKEYLOGFILE` names: with them, the credential could be read from a capture."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # certificate and host name checked
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    for cafile in cafiles:
        context.load_verify_locations(cafile=str(cafile))
    return context


def direct_opener(context: ssl.SSLContext) -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(
        urllib.request.ProxyHandler({}),
        _RefusePlainHttp(),
        urllib.request.HTTPSHandler(context=context),
        _RefuseRedirects(),
    )
