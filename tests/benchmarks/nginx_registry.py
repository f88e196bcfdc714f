"""A registry as fast as a real one can be: Debian's nginx, HTTP/2 over TLS from a test CA,
a static token check on every request, a sparse index and .crate files it serves from disk.

The benchmark compares ways of reaching it; the registry itself must not be what it
measures, so nothing here is Python once nginx runs.

nginx listens twice. `port` serves the registry as it is. `relayed_port` serves the same
files for a latency relay (latency_relay.py) in front of it: clients must reach it only
through the relay, so its config.json names the relay's origin in `dl` and `api`
(written by `name_relay` once the relay listens; until then it is missing, a 404). One
certificate, for localhost, serves both.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from examples.demo.cratebuild import CrateSpec, build_crate, cksum, index_entry, index_relpath
from examples.demo.tls import TestPki

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
TOKEN = "bench-static-token-" + "x" * 32


@dataclass
class NginxRegistry:
    root: Path
    port: int
    relayed_port: int
    process: subprocess.Popen[bytes]
    crates: list[CrateSpec]

    @property
    def origin(self) -> str:
        return origin_at(self.port)

    @property
    def sparse_index(self) -> str:
        return sparse_index(self.origin)

    def name_relay(self, relay_port: int) -> str:
        """Points the relayed server's config.json at a relay on `relay_port`; returns the
        relay's origin, the one clients of the relayed registry use."""
        relayed = origin_at(relay_port)
        write_index_config(self.root / RELAYED_CONFIG, relayed)
        return relayed

    def status_counts(self) -> dict[str, int]:
        """Answers by status and path from nginx's access log; a 401 was a request without the token."""
        counts: dict[str, int] = {}
        log = self.root / "access.log"
        for line in log.read_text().splitlines() if log.exists() else []:
            status, path = line.split(" ", 1)
            key = f"{status} {path}" if status != "200" else "200"
            counts[key] = counts.get(key, 0) + 1
        return counts

    def clear_log(self) -> None:
        (self.root / "access.log").write_text("")
        self.process.send_signal(signal.SIGUSR1)  # reopen the log file (SIGHUP would restart workers)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)


#: The relayed server's config.json, beside the files both servers share.
RELAYED_CONFIG = "relayed-config.json"


def origin_at(port: int) -> str:
    return f"https://localhost:{port}"


def sparse_index(registry_origin: str) -> str:
    return f"sparse+{registry_origin}/index/"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_crates(www: Path, registry_origin: str, count: int, big_mb: int) -> list[CrateSpec]:
    crates = [CrateSpec(f"bench{n:03d}", "1.0.0") for n in range(count)]
    for spec in crates:
        data = build_crate(spec)
        entry = www / "index" / index_relpath(spec.name)
        entry.parent.mkdir(parents=True, exist_ok=True)
        entry.write_text(json.dumps(index_entry(spec, cksum(data))) + "\n")
        download = www / "dl" / spec.name / spec.version / "download"
        download.parent.mkdir(parents=True, exist_ok=True)
        download.write_bytes(data)
    # One large download for the memory figure; its content does not matter to a proxy.
    huge = www / "dl" / "huge" / "1.0.0" / "download"
    huge.parent.mkdir(parents=True, exist_ok=True)
    with huge.open("wb") as out:
        block = os.urandom(1024 * 1024)
        for _ in range(big_mb):
            out.write(block)
    write_index_config(www / "index" / "config.json", registry_origin)
    return crates


def write_index_config(path: Path, registry_origin: str) -> None:
    config = {"dl": f"{registry_origin}/dl/{{crate}}/{{version}}/download", "api": registry_origin, "auth-required": True}
    path.write_text(json.dumps(config))


def start_nginx(root: Path, pki: TestPki, count: int = 200, big_mb: int = 200) -> NginxRegistry:
    root.mkdir(parents=True, exist_ok=True)
    port, relayed_port = _free_port(), _free_port()
    cert, key = pki.issue("nginx", ["localhost", "127.0.0.1"], root)
    crates = write_crates(root / "www", origin_at(port), count, big_mb)
    authorized = f'if ($http_authorization != "{TOKEN}") {{ return 401; }}'
    user = "user root;" if os.geteuid() == 0 else ""  # workers must read files under /tmp
    (root / "nginx.conf").write_text(f"""
{user}
worker_processes 2;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    log_format status '$status $uri';
    access_log {root}/access.log status;
    client_body_temp_path {root}/tmp-body;
    proxy_temp_path {root}/tmp-proxy;
    fastcgi_temp_path {root}/tmp-fastcgi;
    uwsgi_temp_path {root}/tmp-uwsgi;
    scgi_temp_path {root}/tmp-scgi;
    types {{ application/json json; }}
    default_type application/octet-stream;
    sendfile on;
    keepalive_requests 100000;
    # TLS 1.3 as real registries speak it: Debian's nginx 1.22 offers only up to 1.2 by
    # default, whose handshake costs a second round trip.
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    root {root}/www;
    server {{
        listen 127.0.0.1:{port} ssl http2;
        location / {{ {authorized} try_files $uri =404; }}
    }}
    server {{
        listen 127.0.0.1:{relayed_port} ssl http2;
        location = /index/config.json {{ {authorized} alias {root}/{RELAYED_CONFIG}; }}
        location / {{ {authorized} try_files $uri =404; }}
    }}
}}
""")
    process = subprocess.Popen([NGINX, "-c", str(root / "nginx.conf"), "-p", str(root)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while True:  # ready when it accepts connections
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not start: {process.stderr.read().decode() if process.stderr else ''}") from None
            time.sleep(0.02)  # polling for the port
    return NginxRegistry(root, port, relayed_port, process, crates)
