"""`run` loads only the part of mitmproxy its proxy uses: not the web app, LDAP or htpasswd
support that mitmproxy's default addons bring (a third of a second of every CI job)."""

from __future__ import annotations

import json
import subprocess
import sys

UNUSED = ("flask", "ldap3", "passlib", "mitmproxy.addons.onboardingapp", "mitmproxy.addons.clientplayback")


def test_the_in_process_proxy_does_not_load_mitmproxy_s_default_addons() -> None:
    probe = (
        "import json, sys; import cargo_vouch.proxy.inprocess; "
        f"print(json.dumps([name for name in {UNUSED!r} if name in sys.modules]))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == []


def test_mitmdump_still_gets_its_addons_when_the_package_was_loaded_first() -> None:
    """Loading the real package first (as mitmdump does) leaves it alone."""
    probe = (
        "import mitmproxy.addons; from cargo_vouch.proxy.lean_import import skip_default_addons; "
        "skip_default_addons(); import mitmproxy.addons as again; print(len(again.default_addons()) > 10)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "True"
