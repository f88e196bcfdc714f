"""Fetching a registry's `config.json` when Cargo has not fetched it through us yet.

For a sparse index Cargo fetches config.json through the proxy and the injector reads that
answer; we fetch it ourselves only when Cargo did not (its first request was something
else), in this process, with the token. For a git index config.json is inside the
repository, so we fetch the index's tip with `git` (shallow, into a throw-away directory)
— through this very proxy, which adds the token as it does for Cargo's git: the child
never holds a token, in its arguments, its environment or a file.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import urllib.request
from pathlib import Path

from cargo_vouch.children import environment_without_secrets, spawn
from cargo_vouch.direct_https import CredentialNotSent, direct_opener, verified_context
from cargo_vouch.index_config import IndexConfigError, parse_index_config


async def fetch_sparse_config(index_url: str, authorization: str, cafile: Path, timeout: float) -> dict[str, object]:
    url = index_url.removeprefix("sparse+") + "config.json"

    def fetch() -> bytes:
        request = urllib.request.Request(url, headers={"Authorization": authorization})
        opener = direct_opener(verified_context(cafile))
        with opener.open(request, timeout=timeout) as response:
            return response.read(1 << 20)

    try:
        body = await asyncio.to_thread(fetch)
    except CredentialNotSent as exc:
        raise IndexConfigError(str(exc)) from None
    except OSError as exc:
        raise IndexConfigError(f"{url}: {exc}") from None
    return parse_index_config(body, url)


async def fetch_git_config(
    index_url: str, own_proxy: str, cainfo: Path, timeout: float, hidden_env: frozenset[str] = frozenset()
) -> dict[str, object]:
    """`own_proxy` is this proxy's URL (with `run`'s credential), `cainfo` the bundle Cargo
    trusts: git fetches the index as Cargo's git does through the proxy."""
    env = {
        key: value
        for key, value in environment_without_secrets(hidden_env).items()
        if key.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy") and not key.startswith("GIT_")
    }
    settings = [
        # Only the index URL goes through the proxy; nothing else is fetched. No redirects:
        # git would take a redirect's target as the new base URL.
        ("http.proxy", ""),
        (f"http.{index_url}.proxy", own_proxy),
        (f"http.{index_url}.sslCAInfo", str(cainfo)),
        ("http.followRedirects", "false"),
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
