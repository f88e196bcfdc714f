"""URLs and git config keys fit to print: any user:password part dropped."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def redact_url(url: str) -> str:
    """A URL fit to print: any user:password part is dropped."""
    prefix = "sparse+" if url.startswith("sparse+") else ""
    parts = urlsplit(url.removeprefix(prefix))
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return prefix + urlunsplit(parts._replace(netloc=netloc))


def _redact_key(key: str) -> str:
    section, _, rest = key.partition(".")
    url, _, var = rest.rpartition(".")
    return f"{section}.{redact_url(url)}.{var}"
