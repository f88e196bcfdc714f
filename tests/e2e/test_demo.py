"""`make demo` runs `python -m examples.demo`: it must pass on this machine as it is."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.e2e.conftest import REPO

pytestmark = pytest.mark.e2e


def test_demo_builds_through_the_proxy_and_says_pass() -> None:
    result = subprocess.run([sys.executable, "-m", "examples.demo"], cwd=REPO, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("demo: PASS:") and "authenticated all" in last
    assert "GET /dl/hello/0.1.0/download -> 200, authenticated sub=alice@example.com" in result.stdout
