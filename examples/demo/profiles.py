"""How real registries differ from one another, as profiles of the test registry.

Each profile is one difference REGISTRIES.md records — where downloads live and how their
URL is spelled, what a download answers (a redirect on the same host, or to a CDN's
presigned URL), which port is written out, what `Authorization` form is accepted — so a
test can build against "an Artifactory", "a Gitea", "a Kellnr" without one installed.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from urllib.parse import urlsplit

#: The `dl` markers Cargo replaces (cargo's `sources/registry/download.rs`).
MARKERS = ("{crate}", "{version}", "{prefix}", "{lowerprefix}", "{sha256-checksum}")


@dataclass(frozen=True)
class Profile:
    """One registry's shape. In `dl`, `{origin}` is the registry's own origin as its index
    is written, `{origin:443}` the same with the port always written out (Kellnr), and
    `{other}` another host serving the same registry (crates.io's `static.`, Cloudsmith's
    `dl.`): 127.0.0.1 where the index is on localhost."""

    name: str = "default"
    dl: str = "{origin}/dl"
    api: str = "{origin}/web"
    #: Which `Authorization` the registry takes: "bare-or-bearer", "bearer", "bare", "basic".
    auth: str = "bare-or-bearer"
    #: A download's first answer: None (the crate), "same-origin" (302 to /storage/… on the
    #: registry, which needs the token too) or "cdn" (302 to a presigned URL on a CDN that
    #: refuses any Authorization, as S3 does).
    redirect: str | None = None
    #: 443 for a registry on the default port (then its index URL has no port); 0: any free port.
    port: int = 0
    #: The index URL with `:443` written out (only with port 443).
    index_port_written: bool = False
    #: Its host name, and the address it listens on. Port 443 of 127.0.0.1 may be taken
    #: (by the machine's own sandbox, here): a registry on 443 uses another loopback address.
    host: str = "localhost"

    @property
    def address(self) -> str:
        return "127.0.0.1" if self.host == "localhost" else self.host

    def origin(self, port: int, *, written: bool = False) -> str:
        return f"https://{self.host}:{port}" if port != 443 or written else f"https://{self.host}"

    def dl_url(self, port: int) -> str:
        return (
            self.dl.replace("{origin:443}", self.origin(port, written=True))
            .replace("{origin}", self.origin(port, written=self.index_port_written))
            .replace("{other}", f"https://127.0.0.1:{port}")
        )

    def api_url(self, port: int) -> str:
        return self.api.replace("{origin}", self.origin(port, written=self.index_port_written))

    def token_from(self, authorization: str | None) -> tuple[str | None, str | None]:
        """The token in an Authorization value, or why this registry refuses the form."""
        if not authorization:
            return None, "no Authorization header"
        value = authorization.strip()
        scheme, _, rest = value.partition(" ")
        if self.auth == "basic":
            if scheme.lower() != "basic":
                return None, "this registry takes only Basic credentials"
            try:
                _, _, password = base64.b64decode(rest, validate=True).decode().partition(":")
            except ValueError:
                return None, "malformed Basic credentials"
            return password, None
        if self.auth == "bearer":
            return (rest.strip(), None) if scheme.lower() == "bearer" and rest else (None, "this registry takes only Bearer tokens")
        if self.auth == "bare":
            return (value, None) if " " not in value else (None, "this registry takes only a bare token")
        return (rest.strip(), None) if scheme.lower() == "bearer" else (value, None)


def download_url(dl: str, name: str, version: str, checksum: str) -> str:
    """The URL Cargo fetches a crate from, by Cargo's own rule for `dl`."""
    if not any(marker in dl for marker in MARKERS):
        return f"{dl}/{name}/{version}/download"
    prefix = crate_prefix(name)
    return (
        dl.replace("{crate}", name)
        .replace("{version}", version)
        .replace("{prefix}", prefix)
        .replace("{lowerprefix}", prefix.lower())
        .replace("{sha256-checksum}", checksum)
    )


def crate_prefix(name: str) -> str:
    """Cargo's `{prefix}`: `1`, `2`, `3/a`, `ab/cd` (the crate's own case)."""
    if len(name) <= 2:
        return str(len(name))
    if len(name) == 3:
        return f"3/{name[0]}"
    return f"{name[0:2]}/{name[2:4]}"


def path_and_query(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


#: The profiles REGISTRIES.md describes, by what they test.
PROFILES = {
    "default": Profile(),
    # Gitea/Forgejo: dl without markers, Cargo appends /{crate}/{version}/download.
    "gitea": Profile("gitea", dl="{origin}/api/packages/owner/cargo/api/v1/crates", auth="bearer"),
    "crate-version": Profile("crate-version", dl="{origin}/files/{crate}/{version}/download"),
    "prefix": Profile("prefix", dl="{origin}/files/{prefix}/{crate}/{crate}-{version}.crate"),
    "lowerprefix": Profile("lowerprefix", dl="{origin}/files/{lowerprefix}/{crate}-{version}.crate"),
    "checksum": Profile("checksum", dl="{origin}/blobs/sha256/{sha256-checksum}"),
    "query": Profile("query", dl="{origin}/dlq/download?crate={crate}&version={version}"),
    # A download redirected on the registry's own host: the follow-up needs the token too.
    "same-origin-redirect": Profile("same-origin-redirect", redirect="same-origin"),
    # Artifactory's direct download, Gitea's SERVE_DIRECT: a presigned URL on another host.
    "cdn-redirect": Profile("cdn-redirect", redirect="cdn"),
    # Kellnr writes the port, :443 included, into dl.
    "kellnr-443": Profile("kellnr-443", dl="{origin:443}/api/v1/crates", port=443, auth="bare", host="127.0.0.2"),
    "index-443": Profile("index-443", port=443, index_port_written=True, host="127.0.0.2"),
    "bearer-only": Profile("bearer-only", auth="bearer"),
    "basic-only": Profile("basic-only", auth="basic"),
    # crates.io's static.crates.io, Cloudsmith's dl.cloudsmith.io: downloads on another host.
    "dl-other-host": Profile("dl-other-host", dl="{other}/dl"),
}
