"""Fetching a registry's `config.json` when Cargo has not fetched it through us yet.

For a sparse index Cargo fetches config.json through the proxy and the injector reads that
answer; we fetch it ourselves only when Cargo did not (its first request was something
else). For a git index config.json is inside the repository, so we fetch the index's tip
with `git` (shallow, into a throw-away directory), handing the token over in the child's
environment: never on a command line another user could read, never in a file.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import tempfile
import urllib.request
from pathlib import Path

from cargo_vouch.children import spawn
from cargo_vouch.direct_https import RedirectRefused, direct_opener
from cargo_vouch.index_config import IndexConfigError, parse_index_config


async def fetch_sparse_config(index_url: str, authorization: str, cafile: Path, timeout: float) -> dict[str, object]:
    url = index_url.removeprefix("sparse+") + "config.json"

    def fetch() -> bytes:
        request = urllib.request.Request(url, headers={"Authorization": authorization})
        opener = direct_opener(ssl.create_default_context(cafile=str(cafile)))
        with opener.open(request, timeout=timeout) as response:
            return response.read(1 << 20)

    try:
        body = await asyncio.to_thread(fetch)
    except RedirectRefused as exc:
        raise IndexConfigError(str(exc)) from None
    except OSError as exc:
        raise IndexConfigError(f"{url}: {exc}") from None
    return parse_index_config(body, url)


async def fetch_git_config(index_url: str, authorization: str, cafile: Path, timeout: float) -> dict[str, object]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key.lower() not in ("http_proxy", "https_proxy", "all_proxy") and not key.startswith("GIT_")
    }
    settings = [
        # Scoped to the index URL, and no redirects: git would otherwise take a redirect's
        # target as the new base URL and send the header there.
        (f"http.{index_url}.extraHeader", f"Authorization: {authorization}"),
        ("http.followRedirects", "false"),
        # The user's git config may route this URL through the proxy (that is what
        # `setup` writes); this fetch must go straight to the registry.
        ("http.proxy", ""),
        ("http.sslCAInfo", str(cafile)),
    ]
    env.update(
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_TERMINAL_PROMPT="0",
        GIT_CONFIG_COUNT=str(len(settings)),
    )
    for n, (key, value) in enumerate(settings):
        env[f"GIT_CONFIG_KEY_{n}"] = key
        env[f"GIT_CONFIG_VALUE_{n}"] = value

    async def git(*args: str, cwd: str) -> bytes:
        async with spawn(("git", *args), env=env, cwd=cwd) as child:
            stdout = await child.output()
            status, last = await child.exit_detail()
        if status != 0:
            raise IndexConfigError(f"{index_url}: git {args[0]} failed: {last or f'status {status}'}")
        return stdout

    with tempfile.TemporaryDirectory(prefix="cargo-vouch-index-") as scratch:
        try:
            async with asyncio.timeout(timeout):
                await git("init", "--quiet", "--bare", ".", cwd=scratch)
                await git("fetch", "--quiet", "--depth=1", "--no-tags", index_url, "HEAD", cwd=scratch)
                body = await git("show", "FETCH_HEAD:config.json", cwd=scratch)
        except TimeoutError:
            raise IndexConfigError(f"{index_url}: git fetch took longer than {timeout:g} s") from None
        except FileNotFoundError:
            raise IndexConfigError("git is not installed; it is needed to read a git index's config.json") from None
    return parse_index_config(body, index_url)
