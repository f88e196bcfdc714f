"""Reading and writing the user's global git config through the git CLI."""

from __future__ import annotations

import subprocess

from cargo_vouch.cli.setup.plan import SetupError, redact_key


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["git", "config", "--global", *args], capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        raise SetupError(
            "git not found on PATH; it is needed for git settings because net.git-fetch-with-cli is on"
        ) from None


def git_get_all(key: str) -> list[str]:
    """All values of a key in the user's global git config ([] when unset)."""
    result = _git("--get-all", key)
    if result.returncode == 1:
        return []
    if result.returncode != 0:
        raise SetupError(f"git config --global --get-all {redact_key(key)}: {_first_line(result.stderr)}")
    return result.stdout.splitlines()


def git_set(key: str, values: list[str]) -> None:
    """Make `key` hold exactly `values` in the global git config ([] unsets it)."""
    result = _git("--unset-all", key)
    if result.returncode not in (0, 5):  # 5: the key was not set
        raise SetupError(f"git config --global --unset-all {redact_key(key)}: {_first_line(result.stderr)}")
    for value in values:
        result = _git("--add", key, value)
        if result.returncode != 0:
            raise SetupError(f"git config --global --add {redact_key(key)}: {_first_line(result.stderr)}")


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or ["failed"])[0]
