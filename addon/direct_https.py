"""HTTPS requests that carry a credential, made by the proxy itself.

A token or a client secret goes straight to the server it is meant for: no proxy (an
`HTTPS_PROXY` may well point at this very proxy), TLS verified against the roots given,
and no redirect followed, since urllib would carry the `Authorization` header along to
wherever the redirect points.
"""

from __future__ import annotations

import ssl
import urllib.request


class RedirectRefused(Exception):
    """The server answered with a redirect, which is not followed with a credential."""


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        raise RedirectRefused(f"{req.full_url} redirected ({code}); cargo-vouch does not follow redirects with credentials")


def direct_opener(context: ssl.SSLContext) -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(
        urllib.request.ProxyHandler({}),
        urllib.request.HTTPSHandler(context=context),
        _RefuseRedirects(),
    )
