"""Providers run as Cargo runs them: real child processes speaking protocol v1."""

import asyncio
import json
import sys
import time
from pathlib import Path

import pytest

from cargo_vouch.config import RegistryConfig
from cargo_vouch.protocol import Operation, Owners, ProviderError, Publish, Read, Session, Token, Yank
from cargo_vouch.providers import provider_for
from cargo_vouch.providers.token_cache import TokenCache
from tests.fixtures.paths import BIN

SCRIPTED = r'''
import json, os, sys
with open(os.environ["CALLS"], "a") as f:
    f.write("call\n")
print(json.dumps({"v": [1]}), flush=True)
request = json.loads(sys.stdin.readline())
with open(os.environ["REQUESTS"], "a") as f:
    f.write(json.dumps({"argv": sys.argv[1:], "request": request}) + "\n")
answer = json.loads(os.environ["ANSWER"])
print(json.dumps(answer), flush=True)
'''


@pytest.fixture
def scripted(tmp_path, monkeypatch):
    """An external provider whose answer the test chooses, counting its calls."""
    script = tmp_path / "provider.py"
    script.write_text(SCRIPTED)
    calls, requests = tmp_path / "calls", tmp_path / "requests"
    monkeypatch.setenv("CALLS", str(calls))
    monkeypatch.setenv("REQUESTS", str(requests))

    def make(answer: dict, **registry_args) -> tuple:
        monkeypatch.setenv("ANSWER", json.dumps(answer))
        registry = RegistryConfig(
            name="corp",
            index="sparse+https://cargo.corp.example/index/",
            credential_provider=(sys.executable, str(script), "--"),
            **registry_args,
        )
        count = lambda: len(calls.read_text().splitlines()) if calls.exists() else 0  # noqa: E731
        sent = lambda: [json.loads(line) for line in requests.read_text().splitlines()]  # noqa: E731
        return provider_for(registry), count, sent

    return make


def ok(token="tok-1", cache="expires", expiration=None, independent=True):
    body = {"kind": "get", "token": token, "cache": cache, "operation_independent": independent}
    if cache == "expires":
        body["expiration"] = expiration if expiration is not None else int(time.time()) + 3600
    return {"Ok": body}


async def test_protocol_request_is_what_cargo_sends(scripted):
    provider, _, sent = scripted(ok())
    token = await provider.get(Yank("foo", "1.0.0"))
    assert token.value == "tok-1"
    [record] = sent()
    assert record["argv"] == ["--", "--cargo-plugin"]
    assert record["request"] == {
        "v": 1,
        "registry": {"index-url": "sparse+https://cargo.corp.example/index/", "name": "corp"},
        "kind": "get",
        "operation": "yank",
        "name": "foo",
        "vers": "1.0.0",
        # The same action again, nested, for Vouch's provider (VOUCH.md); Cargo's ignore it.
        "action": {"kind": "get", "operation": "yank", "name": "foo", "vers": "1.0.0"},
        "args": [],
    }


async def test_token_value_never_in_repr(scripted):
    provider, _, _ = scripted(ok(token="s3cret-value"))
    token = await provider.get(Read())
    assert "s3cret-value" not in repr(token)


async def test_not_found_error_is_reported(scripted):
    provider, _, _ = scripted({"Err": {"kind": "not-found", "message": "not authenticated - run 'vouch login' first"}})
    with pytest.raises(ProviderError) as info:
        await provider.get(Read())
    assert info.value.kind == "not-found"
    assert "vouch login" in info.value.message


@pytest.mark.parametrize(
    "script,expected",
    [
        ("provider-crash", "exited with status 3 before answering: boom"),
        ("provider-garbage", "broke the protocol: answer is not JSON"),
    ],
)
async def test_crash_and_garbage_are_clear_errors(script, expected):
    registry = RegistryConfig(name="corp", index="https://x/i.git", credential_provider=(str(BIN / script),))
    with pytest.raises(ProviderError) as info:
        await provider_for(registry).get(Read())
    assert expected in info.value.message


async def test_hanging_provider_times_out_and_is_killed():
    registry = RegistryConfig(
        name="corp", index="https://x/i.git", credential_provider=(str(BIN / "provider-hang"),), provider_timeout=1.0
    )
    started = time.monotonic()
    with pytest.raises(ProviderError, match="did not answer within 1 s"):
        await provider_for(registry).get(Read())
    assert time.monotonic() - started < 5


async def test_missing_provider_command():
    registry = RegistryConfig(name="corp", index="https://x/i.git", credential_provider=("/nonexistent/vouch",))
    with pytest.raises(ProviderError, match="cannot start"):
        await provider_for(registry).get(Read())


async def test_cargo_token_env_then_credentials_file(tmp_path, monkeypatch):
    registry = RegistryConfig(name="my-corp", index="https://x/i.git", credential_provider=("cargo:token",))
    monkeypatch.setenv("CARGO_HOME", str(tmp_path))
    monkeypatch.delenv("CARGO_REGISTRIES_MY_CORP_TOKEN", raising=False)
    with pytest.raises(ProviderError) as info:
        await provider_for(registry).get(Read())
    assert info.value.kind == "not-found"
    (tmp_path / "credentials.toml").write_text('[registries.my-corp]\ntoken = "from-file"\n')
    assert (await provider_for(registry).get(Read())).value == "from-file"
    monkeypatch.setenv("CARGO_REGISTRIES_MY_CORP_TOKEN", "from-env")
    assert (await provider_for(registry).get(Read())).value == "from-env"


async def test_token_from_stdout_gets_cargo_env(tmp_path):
    script = tmp_path / "print-token"
    script.write_text('#!/bin/sh\necho "tok-for-$CARGO_REGISTRY_NAME_OPT-$CARGO_REGISTRY_INDEX_URL"\necho second line\n')
    script.chmod(0o755)
    registry = RegistryConfig(
        name="corp", index="https://x/i.git", credential_provider=("cargo:token-from-stdout", str(script))
    )
    token = await provider_for(registry).get(Read())
    assert token.value == "tok-for-corp-https://x/i.git"
    assert token.cache == Session()


# --- caching, as Cargo does it -------------------------------------------------------


async def test_concurrent_requests_share_one_provider_call(scripted):
    provider, count, _ = scripted(ok())
    cache = TokenCache()
    tokens = await asyncio.gather(*(cache.get("corp", provider, Read()) for _ in range(50)))
    assert {t.token.value for t in tokens} == {"tok-1"}
    assert count() == 1
    await cache.get("corp", provider, Read())
    assert count() == 1


async def test_expiring_token_is_replaced_within_60_seconds_of_expiry(scripted):
    now = [1_000_000.0]
    cache = TokenCache(clock=lambda: now[0])
    provider, count, _ = scripted(ok(expiration=1_000_000 + 120))
    await cache.get("corp", provider, Read())
    now[0] += 59  # 61 s left: still good
    await cache.get("corp", provider, Read())
    assert count() == 1
    now[0] += 2  # 59 s left: Cargo would refresh
    await cache.get("corp", provider, Read())
    assert count() == 2


async def test_never_is_not_reused_and_session_until_refused(scripted):
    cache = TokenCache()
    provider, count, _ = scripted(ok(cache="never"))
    await cache.get("corp", provider, Read())
    await cache.get("corp", provider, Read())
    assert count() == 2
    provider, count, _ = scripted(ok(token="sess", cache="session"))
    cache = TokenCache()
    await cache.get("corp", provider, Read())
    await cache.get("corp", provider, Read())
    assert count() == 3  # 2 from before + 1
    cache.refused("corp", "sess")
    await cache.get("corp", provider, Read())
    assert count() == 4


async def test_operation_dependent_tokens_are_cached_per_operation(scripted):
    cache = TokenCache()
    provider, count, _ = scripted(ok(independent=False))
    await cache.get("corp", provider, Read())
    await cache.get("corp", provider, Read())
    assert count() == 1
    await cache.get("corp", provider, Owners("foo"))
    assert count() == 2


async def test_failure_reaches_every_waiter_and_is_not_cached(scripted):
    provider, count, _ = scripted({"Err": {"kind": "not-found", "message": "logged out"}})
    cache = TokenCache()
    results = await asyncio.gather(*(cache.get("corp", provider, Read()) for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, ProviderError) for r in results)
    assert count() == 1
    with pytest.raises(ProviderError):
        await cache.get("corp", provider, Read())
    assert count() == 2


async def test_stray_output_is_never_quoted_in_the_error(tmp_path):
    """`vouch credential token` configured by mistake prints a raw token, not the hello."""
    script = tmp_path / "prints-token"
    script.write_text("#!/bin/sh\necho opaque-secret-token-123\n")
    script.chmod(0o755)
    registry = RegistryConfig(name="corp", index="https://x/i.git", credential_provider=(str(script),))
    with pytest.raises(ProviderError) as info:
        await provider_for(registry).get(Read())
    assert "expected the hello" in info.value.message
    assert "opaque-secret" not in info.value.message


async def test_never_token_is_not_shared_between_concurrent_requests(tmp_path):
    script = tmp_path / "one-use"
    script.write_text(
        "import json, os, sys, time\n"
        "print(json.dumps({'v': [1]}), flush=True); sys.stdin.readline(); time.sleep(0.3)\n"
        "token = f't{os.getpid()}'  # a different token from every provider run\n"
        "print(json.dumps({'Ok': {'kind': 'get', 'token': token, 'cache': 'never', 'operation_independent': True}}), flush=True)\n"
    )
    registry = RegistryConfig(name="corp", index="https://x/i.git", credential_provider=(sys.executable, str(script)))
    cache = TokenCache()
    tokens = await asyncio.gather(*(cache.get("corp", provider_for(registry), Read()) for _ in range(4)))
    assert len({t.token.value for t in tokens}) == 4


async def test_operation_bound_publish_token_is_not_reused_for_another_publish(scripted):
    cache = TokenCache()
    provider, count, _ = scripted(ok(cache="session", independent=False))
    await cache.get("corp", provider, Publish("a", "1.0.0", "x"))
    await cache.get("corp", provider, Publish("b", "1.0.0", "y"))
    assert count() == 2


@pytest.mark.parametrize("token", ["tok\r\nX-Evil: 1", "tök"])
async def test_tokens_that_cannot_be_a_header_value_are_refused(scripted, token):
    provider, _, _ = scripted(ok(token=token))
    with pytest.raises(ProviderError, match="characters an HTTP header cannot carry"):
        await TokenCache().get("corp", provider, Read())


async def test_chatty_provider_stderr_neither_blocks_nor_hides(tmp_path, capfd):
    """Cargo lets a provider's stderr through (prompts, notices); 1 MiB of it must not
    stall the exchange on a full pipe."""
    script = tmp_path / "chatty"
    script.write_text(
        "import json, sys\n"
        "sys.stderr.write('x' * (1 << 20) + '\\ntouch your security key\\n'); sys.stderr.flush()\n"
        "print(json.dumps({'v': [1]}), flush=True); sys.stdin.readline()\n"
        "print(json.dumps({'Ok': {'kind': 'get', 'token': 't', 'cache': 'session'}}), flush=True)\n"
    )
    registry = RegistryConfig(name="corp", index="https://x/i.git", credential_provider=(sys.executable, str(script)),
                              provider_timeout=10)
    token = await provider_for(registry).get(Read())
    assert token.value == "t"
    assert "touch your security key" in capfd.readouterr().err


async def test_cancelled_request_leaves_no_provider_running(tmp_path):
    pidfile = tmp_path / "pid"
    script = tmp_path / "slow"
    script.write_text(f"#!/bin/sh\necho $$ > {pidfile}\nexec sleep 60\n")
    script.chmod(0o755)
    registry = RegistryConfig(name="corp", index="https://x/i.git",
                              credential_provider=("cargo:token-from-stdout", str(script)))
    task = asyncio.ensure_future(provider_for(registry).get(Read()))
    while not pidfile.exists() or not pidfile.read_text().strip():
        await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    pid = int(pidfile.read_text())
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()


@pytest.mark.parametrize("value", ["secret-token ", " secret-token", "secret\r\nX-Evil: 1"])
async def test_a_token_no_header_can_carry_is_refused_without_quoting_it(value: str) -> None:
    class Provider:
        description = "test provider"
        login_hint = "none"

        async def get(self, operation: Operation) -> Token:
            return Token(value, Session())

    with pytest.raises(ProviderError) as refused:
        await TokenCache().get("corp", Provider(), Read())
    assert "secret" not in refused.value.message


async def gone_within(pid: int, seconds: float) -> bool:
    """Whether the process ends within `seconds` (checked each time the loop turns)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not process_gone(pid):
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.01)  # a poll interval while waiting for the kernel, not a synchronisation
    return True


def process_gone(pid: int) -> bool:
    """Dead (or a zombie waiting for its reaper) — not running any more."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


@pytest.mark.parametrize("holding", ["stderr", "stdout"])
async def test_a_helper_that_leaves_a_child_holding_its_output_does_not_hold_the_request(tmp_path, holding):
    """The review's helper: provider-timeout = 3, yet requests waited ~30 s for the child."""
    pid_file = tmp_path / "lingering.pid"
    keep = "2>&1 >/dev/null" if holding == "stderr" else ">&1 2>/dev/null"
    script = tmp_path / "token-helper"
    script.write_text(f"#!/bin/sh\nsleep 60 {keep} &\necho $! > {pid_file}\necho tok-from-helper\n")
    script.chmod(0o755)
    registry = RegistryConfig(
        name="corp", index="https://x/i.git", credential_provider=("cargo:token-from-stdout", str(script)),
        provider_timeout=3.0,
    )
    token = await asyncio.wait_for(provider_for(registry).get(Read()), 10)  # a bound, not a timing
    assert token.value == "tok-from-helper"
    # Killed with the helper's process group: SIGKILL is delivered asynchronously, so the
    # process may still be running for a moment after killpg returns.
    assert await gone_within(int(pid_file.read_text()), 5)


async def test_provider_children_do_not_get_the_secrets_the_proxy_reads(tmp_path, monkeypatch):
    """Another process of this user can read a running provider's /proc/PID/environ."""
    monkeypatch.setenv("CARGO_REGISTRIES_CORP_TOKEN", "real-registry-token")
    monkeypatch.setenv("CARGO_REGISTRY_TOKEN", "crates-io-token")
    monkeypatch.setenv("VOUCH_CLIENT_SECRET", "ci-client-secret")
    monkeypatch.setenv("HARMLESS", "kept")
    dump = tmp_path / "env"
    script = tmp_path / "env-helper"
    script.write_text(f"#!/bin/sh\nenv > {dump}\necho tok\n")
    script.chmod(0o755)
    registry = RegistryConfig(name="corp", index="https://x/i.git", credential_provider=("cargo:token-from-stdout", str(script)))
    await provider_for(registry, hidden_env=frozenset({"VOUCH_CLIENT_SECRET"})).get(Read())
    seen = dump.read_text()
    assert "HARMLESS=kept" in seen and "CARGO_REGISTRY_INDEX_URL=https://x/i.git" in seen
    for secret in ("real-registry-token", "crates-io-token", "ci-client-secret"):
        assert secret not in seen


async def test_a_line_longer_than_any_protocol_message_is_a_clear_error(tmp_path):
    script = tmp_path / "long-line"
    script.write_text("import sys\nsys.stdout.write('{\"v\":[1]}\\n' + 'x' * 200000 + '\\n'); sys.stdout.flush()\n"
                      "sys.stdin.readline()\n")
    registry = RegistryConfig(name="corp", index="https://x/i.git", credential_provider=(sys.executable, str(script)))
    with pytest.raises(ProviderError) as info:
        await provider_for(registry).get(Read())
    assert "broke the protocol: a line longer than 64 KiB" in info.value.message


async def test_a_provider_that_answers_and_never_exits_is_an_error_within_the_timeout():
    """Waiting for its exit timed out, which cancelled the exit future every waiter shares:
    the cleanup's own wait then raised CancelledError, the call ended cancelled instead of
    with an error, and every request waiting on it hung for good."""
    registry = RegistryConfig(
        name="corp", index="https://x/i.git", credential_provider=(str(BIN / "provider-answer-then-linger"),),
        provider_timeout=1.0,
    )
    started = time.monotonic()
    with pytest.raises(ProviderError, match="answered but did not exit within 1 s"):
        await asyncio.wait_for(provider_for(registry).get(Read()), 10)
    assert time.monotonic() - started < 5
