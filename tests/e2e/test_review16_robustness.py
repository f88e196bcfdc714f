"""Review 16: a misbehaving registry or provider, as a user meets it (see
/work/notes/review16.md). Each test failed before its fix."""

from __future__ import annotations

import subprocess

import pytest

from tests.e2e.conftest import World

pytestmark = pytest.mark.e2e


def test_a_registry_certificate_the_proxy_does_not_trust_is_one_line_saying_what_to_do(world: World) -> None:
    """Refused, rightly; but Cargo got mitmproxy's HTML 502 and the proxy's log said only
    'Server TLS handshake failed', with nothing about [proxy] upstream-ca."""
    world.login()
    # The test registry's certificate comes from the test CA, which is not in the system's roots.
    world.config_path.write_text(
        f'[proxy]\nlisten = "127.0.0.1:{world.proxy_port}"\n\n'
        f'[registries.corp]\nindex = "{world.registry.sparse_index_url}"\n'
    )
    proxy = world.start_proxy()
    config_json = world.registry.sparse_index_url.removeprefix("sparse+") + "config.json"
    fetched = subprocess.run(["curl", "-sS", "--proxy", proxy.url, "--cacert", str(world.cainfo), config_json],
                             capture_output=True, text=True, timeout=60)
    proxy.wait_for("upstream-ca")
    proxy.stop()
    assert "502" in fetched.stdout or fetched.returncode != 0
    assert world.registry.requests == []
    line = next(line for line in proxy.lines if "TLS to the registry failed" in line)
    assert line.strip().endswith(f"if it uses a private CA, add that CA to [proxy] upstream-ca in {world.config_path}")
