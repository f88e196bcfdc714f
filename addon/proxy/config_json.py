"""A sparse index's `config.json` on its way to Cargo: read (to learn `dl` and `api`) and
handed on without `auth-required` — in bounded memory.

The answer streams through a callable that keeps at most MAX_CONFIG_JSON bytes, so a
registry (or anything in front of it) that sends an endless body cannot grow the proxy.
Its status and headers are already on their way when the end shows what the body was,
so an answer that cannot be read is replaced by one line saying so, not passed on as if
it were config.json.
"""

from __future__ import annotations

from collections.abc import Callable

from mitmproxy import http

from cargo_vouch.config import ascii_number
from cargo_vouch.index_config import MAX_CONFIG_JSON, IndexConfigError, parse_index_config, without_auth_required
from cargo_vouch.logs import get_logger

logger = get_logger(__name__)

Learned = Callable[[dict[str, object]], None]


def rewrite_config_json(flow: http.HTTPFlow, registry: str, learned: Learned) -> None:
    """Set up the answer (status 200, in responseheaders) to be read and rewritten as it streams."""
    response = flow.response
    assert response is not None
    declared = response.headers.get("Content-Length", "")
    content_encoding = response.headers.get("Content-Encoding")
    for name in ("Content-Length", "Content-Encoding", "ETag"):
        response.headers.pop(name, None)
    if flow.request.http_version.startswith("HTTP/1"):
        response.headers["Transfer-Encoding"] = "chunked"  # the rewritten body has a new length
    rewriter = ConfigJsonRewriter(registry, learned, content_encoding)
    if (ascii_number(declared) or 0) > MAX_CONFIG_JSON:
        response.status_code, response.reason = 502, "Bad Gateway"
        rewriter.refuse(f"config.json of registry '{registry}' is {declared} bytes, over {MAX_CONFIG_JSON}")
    response.stream = rewriter


class ConfigJsonRewriter:
    """mitmproxy's response stream callable: gets each chunk, then b"" at the end."""

    def __init__(self, registry: str, learned: Learned, content_encoding: str | None = None) -> None:
        self.registry = registry
        self.learned = learned
        self.content_encoding = content_encoding
        self.size = 0
        self._parts: list[bytes] = []
        self._refusal: str | None = None

    def refuse(self, reason: str) -> None:
        if self._refusal is None:
            self._refusal = reason
            self._parts.clear()
            logger.warning(f"{reason}; not passed on to Cargo")

    def __call__(self, chunk: bytes) -> list[bytes] | bytes:
        """Holds each chunk back (an empty list: no empty chunk goes out, which chunked framing
        would read as the end), and at the end (b"") gives the whole answer."""
        if chunk:
            if self._refusal is None:
                self.size += len(chunk)
                if self.size > MAX_CONFIG_JSON:
                    self.refuse(f"config.json of registry '{self.registry}' is larger than {MAX_CONFIG_JSON} bytes")
                else:
                    self._parts.append(chunk)
            return []
        return self._finish()

    def _finish(self) -> bytes:
        if self._refusal is None:
            body = b"".join(self._parts)
            self._parts.clear()
            try:
                if self.content_encoding not in (None, "", "identity"):
                    # Asked for with Accept-Encoding: identity; unpacking it could take any size.
                    raise IndexConfigError(
                        f"config.json of registry '{self.registry}' came {self.content_encoding}-encoded"
                    )
                data = parse_index_config(body, f"registry '{self.registry}'")
            except IndexConfigError as exc:
                self.refuse(str(exc))
            else:
                self.learned(data)
                return without_auth_required(data)
        return f"cargo-vouch: {self._refusal}\n".encode()
