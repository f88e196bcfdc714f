"""A storage service a registry redirects downloads to, with presigned URLs (S3, CloudFront,
MinIO; Gitea's SERVE_DIRECT, Artifactory's direct download).

Like S3 it takes its authentication from the URL's signature and refuses a request that
also carries an `Authorization` header ("only one auth mechanism allowed"): so a download
through it works only if nobody — Cargo, curl or the proxy — sends the registry's token to
it. `requests` records what arrived, headers included.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .servers import BackgroundServer, LocalHTTPServer, local_server
from .tls import TestPki


@dataclass(frozen=True)
class CdnRequest:
    method: str
    path: str
    headers: dict[str, str]
    status: int


class PresignedCdn(BackgroundServer):
    """HTTPS on 127.0.0.1 (its certificate names that address), objects by key."""

    __test__ = False
    _name = "cdn"

    def __init__(self, workdir: Path, pki: TestPki) -> None:
        super().__init__()
        self.workdir = workdir
        self.pki = pki
        self._key = secrets.token_bytes(16)
        self._lock = threading.Lock()
        self._objects: dict[str, bytes] = {}
        self._requests: list[CdnRequest] = []

    def _bind(self) -> LocalHTTPServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cert, key = self.pki.issue("cdn", ["127.0.0.1"], self.workdir)
        return local_server(_make_handler(self), tls=(cert, key))

    def presign(self, key: str, data: bytes) -> str:
        """Store an object and return the URL that fetches it, signed."""
        with self._lock:
            self._objects[key] = data
        return f"https://127.0.0.1:{self.port}/bucket/{key}?X-Amz-Signature={self._signature(key)}"

    @property
    def requests(self) -> list[CdnRequest]:
        with self._lock:
            return list(self._requests)

    def _signature(self, key: str) -> str:
        return hmac.new(self._key, key.encode(), "sha256").hexdigest()

    def _answer(self, method: str, target: str, headers: dict[str, str]) -> tuple[int, bytes]:
        if any(name.lower() == "authorization" for name in headers):
            return 400, b"<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed</Message></Error>"
        parts = urlsplit(target)
        key = parts.path.removeprefix("/bucket/")
        signature = parse_qs(parts.query).get("X-Amz-Signature", [""])[0]
        if not hmac.compare_digest(signature, self._signature(key)):
            return 403, b"<Error><Code>SignatureDoesNotMatch</Code></Error>"
        with self._lock:
            data = self._objects.get(key)
        return (200, data) if data is not None else (404, b"<Error><Code>NoSuchKey</Code></Error>")


def _make_handler(cdn: PresignedCdn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 30

        def setup(self) -> None:
            self.request.settimeout(self.timeout)
            self.request.do_handshake()
            super().setup()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

        def _serve(self) -> None:
            headers = dict(self.headers.items())
            status, body = cdn._answer(self.command, self.path, headers)
            with cdn._lock:
                cdn._requests.append(CdnRequest(self.command, self.path, headers, status))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = _serve

    return Handler
