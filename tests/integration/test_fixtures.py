"""The test fixtures behave as the end-to-end tests assume: otherwise an e2e failure
could be the fixture's fault rather than the proxy's."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import json
import os
import ssl
import stat
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest

from examples.demo.cratebuild import (
    CrateSpec,
    build_crate,
    cksum,
    index_line,
    index_relpath,
    publish_body,
)
from examples.demo.issuer import Issuer
from examples.demo.registry import (
    UNAUTHORIZED_BODY,
    WWW_AUTHENTICATE,
    TestRegistry,
    clean_git_env,
)
from examples.demo.tls import TestPki, make_test_pki
from tests.fixtures.origin import TlsOrigin, peer_cert_der

BIN = Path(__file__).resolve().parents[1] / "fixtures" / "bin"
VOUCH_BIN = Path(__file__).resolve().parents[2] / "examples" / "demo" / "bin"
CRATES = [CrateSpec("private-greeter", "0.1.0"), CrateSpec("abc", "1.0.0", [("private-greeter", "^0.1")])]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return make_test_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    with Issuer() as iss:
        yield iss


@pytest.fixture(scope="module")
def registry(
    tmp_path_factory: pytest.TempPathFactory, pki: TestPki, issuer: Issuer
) -> Iterator[TestRegistry]:
    with TestRegistry(tmp_path_factory.mktemp("registry"), pki, issuer, CRATES) as reg:
        yield reg


def request(
    reg: TestRegistry,
    method: str,
    path: str,
    token: str | None = None,
    body: bytes | None = None,
) -> tuple[int, dict[str, str], bytes]:
    ctx = ssl.create_default_context(cafile=str(reg.pki.ca_cert))
    conn = http.client.HTTPSConnection("localhost", reg.port, context=ctx, timeout=10)
    try:
        headers = {"Authorization": token} if token is not None else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


# -- cratebuild -----------------------------------------------------------------------------


def test_index_relpath_follows_cargo_layout() -> None:
    assert index_relpath("a") == "1/a"
    assert index_relpath("AB") == "2/ab"
    assert index_relpath("abc") == "3/a/abc"
    assert index_relpath("Private-Greeter") == "pr/iv/private-greeter"


def test_crate_is_deterministic_and_well_formed() -> None:
    spec = CrateSpec("private-greeter", "0.1.0")
    data = build_crate(spec)
    assert data == build_crate(spec)
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as tar:
        names = tar.getnames()
        lib = tar.extractfile("private-greeter-0.1.0/src/lib.rs").read().decode()  # type: ignore[union-attr]
    assert names == ["private-greeter-0.1.0/Cargo.toml", "private-greeter-0.1.0/src/lib.rs"]
    assert '"hello from private-greeter 0.1.0"' in lib
    line = json.loads(index_line(spec, cksum(data)))
    assert line == {
        "name": "private-greeter",
        "vers": "0.1.0",
        "deps": [],
        "cksum": hashlib.sha256(data).hexdigest(),
        "features": {},
        "yanked": False,
    }


# -- issuer and token verification ------------------------------------------------------------


def test_issuer_publishes_jwks_and_mints_vouch_shaped_tokens(
    issuer: Issuer, registry: TestRegistry
) -> None:
    token = issuer.mint(sub="bob@example.com", lifetime=600)
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "ES256", "typ": "at+jwt", "kid": issuer.kid}
    assert header["kid"].startswith("vouch-oidc-")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 600
    assert claims["iss"] == issuer.url and claims["hardware_verified"] is True
    assert claims["amr"] == ["hwk", "pin", "user"] and "jkt" in claims["cnf"]
    assert registry.verify(token) == ("bob@example.com", None)


def test_registry_rejects_missing_forged_and_expired_tokens(
    registry: TestRegistry, issuer: Issuer
) -> None:
    registry.clear_requests()
    bad = {
        "none": None,
        "garbage": "not-a-jwt",
        "forged": issuer.mint_foreign(),
        "expired": issuer.mint(exp=int(time.time()) - 10),
    }
    for label, token in bad.items():
        status, headers, body = request(registry, "GET", "/sparse/config.json", token)
        assert status == 401, label
        assert body.decode() == UNAUTHORIZED_BODY
        assert headers["www-authenticate"] == WWW_AUTHENTICATE
    recs = registry.requests
    assert [r.authenticated for r in recs] == [False] * 4
    assert [r.authorization for r in recs] == list(bad.values())
    assert all(r.status == 401 and r.reason for r in recs)


def test_registry_accepts_minted_token_with_or_without_bearer(
    registry: TestRegistry, issuer: Issuer
) -> None:
    registry.clear_requests()
    token = issuer.mint()
    for value in (token, f"Bearer {token}"):
        status, _, body = request(registry, "GET", "/sparse/config.json", value)
        assert status == 200
        assert json.loads(body) == {
            "dl": registry.dl_url,
            "api": registry.api_url,
            "auth-required": True,
        }
    status, _, _ = request(registry, "GET", "/nothing/here?x=1", token)
    assert status == 404
    recs = registry.requests
    assert [(r.path, r.authenticated, r.subject) for r in recs] == [
        ("/sparse/config.json", True, "alice@example.com"),
        ("/sparse/config.json", True, "alice@example.com"),
        ("/nothing/here?x=1", True, "alice@example.com"),
    ]
    assert recs[0].authorization == token


def test_download_matches_index_cksum(registry: TestRegistry, issuer: Issuer) -> None:
    token = issuer.mint()
    status, _, index = request(registry, "GET", "/sparse/pr/iv/private-greeter", token)
    assert status == 200
    entry = json.loads(index.decode().splitlines()[0])
    status, _, crate = request(registry, "GET", "/dl/private-greeter/0.1.0/download", token)
    assert status == 200
    assert hashlib.sha256(crate).hexdigest() == entry["cksum"]
    status, _, abc = request(registry, "GET", "/sparse/3/a/abc", token)
    assert json.loads(abc)["deps"][0]["name"] == "private-greeter"
    assert request(registry, "GET", "/dl/private-greeter/9.9.9/download", token)[0] == 404


def test_publish_then_yank_updates_both_indexes(
    registry: TestRegistry, issuer: Issuer, tmp_path: Path
) -> None:
    token = issuer.mint(sub="carol@example.com")
    spec = CrateSpec("fresh-crate", "0.2.0")
    status, _, body = request(registry, "PUT", "/web/api/v1/crates/new", token, publish_body(spec))
    assert status == 200, body
    assert json.loads(body) == {"warnings": {"invalid_categories": [], "invalid_badges": [], "other": []}}
    assert registry.published[-1].subject == "carol@example.com"
    status, _, body = request(registry, "DELETE", "/web/api/v1/crates/fresh-crate/0.2.0/yank", token)
    assert (status, json.loads(body)) == (200, {"ok": True})
    status, _, index = request(registry, "GET", "/sparse/fr/es/fresh-crate", token)
    assert json.loads(index)["yanked"] is True
    clone = git_clone(registry, token, tmp_path / "clone")
    assert json.loads((clone / "fr/es/fresh-crate").read_text())["yanked"] is True
    status, _, _ = request(registry, "PUT", "/web/api/v1/crates/fresh-crate/0.2.0/unyank", token)
    assert status == 200 and registry.index_entries("fresh-crate")[0]["yanked"] is False


# -- git smart HTTP with the real git CLI ------------------------------------------------------


def git_env(registry: TestRegistry, home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    return clean_git_env(home, {"GIT_SSL_CAINFO": str(registry.pki.ca_cert)})


def git_clone(registry: TestRegistry, token: str, dest: Path) -> Path:
    subprocess.run(
        ["git", "-c", f"http.extraHeader=Authorization: {token}", "clone", "-q",
         registry.git_index_url, str(dest)],
        env=git_env(registry, dest.parent / "home"), check=True, capture_output=True, timeout=60,
    )
    return dest


def test_git_ls_remote_needs_token(registry: TestRegistry, issuer: Issuer, tmp_path: Path) -> None:
    env = git_env(registry, tmp_path / "home")
    registry.clear_requests()
    refused = subprocess.run(
        ["git", "ls-remote", registry.git_index_url],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert refused.returncode != 0
    assert registry.requests and not any(r.authenticated for r in registry.requests)
    token = issuer.mint()
    listed = subprocess.run(
        ["git", "-c", f"http.extraHeader=Authorization: {token}", "ls-remote",
         registry.git_index_url],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )
    refs = {line.split("\t")[1] for line in listed.stdout.splitlines()}
    assert {"HEAD", "refs/heads/master"} <= refs


def test_git_clone_has_config_and_index(registry: TestRegistry, issuer: Issuer, tmp_path: Path) -> None:
    clone = git_clone(registry, issuer.mint(), tmp_path / "index")
    assert json.loads((clone / "config.json").read_text()) == {
        "dl": registry.dl_url,
        "api": registry.api_url,
    }
    entry = json.loads((clone / "pr/iv/private-greeter").read_text())
    assert entry["cksum"] == cksum(registry.crate_bytes("private-greeter", "0.1.0"))


# -- origin ------------------------------------------------------------------------------


def test_origin_echoes_headers_and_exposes_its_certificate(pki: TestPki, tmp_path: Path) -> None:
    with TlsOrigin(tmp_path, pki) as origin:
        ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
        conn = http.client.HTTPSConnection("127.0.0.1", origin.port, context=ctx, timeout=10)
        conn.request("GET", "/echo?a=1", headers={"X-Probe": "yes"})
        resp = conn.getresponse()
        echoed = json.loads(resp.read())
        conn.close()
        assert resp.status == 200 and echoed["path"] == "/echo?a=1"
        assert echoed["headers"]["X-Probe"] == "yes" and "Authorization" not in echoed["headers"]
        assert peer_cert_der("127.0.0.1", origin.port) == origin.cert_der
        assert origin.url == f"https://127.0.0.1:{origin.port}"


# -- vouch double and broken providers -----------------------------------------------------------


def run_vouch(
    tmp_path: Path, argv: list[str], stdin: str = "", extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The double with its session under tmp_path and its log at tmp_path/vouch.log."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
        "VOUCH_DOUBLE_LOG": str(tmp_path / "vouch.log"),
        **(extra_env or {}),
    }
    return subprocess.run(
        [str(VOUCH_BIN / "vouch"), *argv], input=stdin, env=env, capture_output=True, text=True,
        timeout=30,
    )


def provider(
    tmp_path: Path, lines: list[dict], extra_env: dict[str, str] | None = None
) -> tuple[list[dict], subprocess.CompletedProcess[str]]:
    """One provider session as Cargo runs it: request lines in, JSON lines out."""
    stdin = "".join(json.dumps(line) + "\n" for line in lines)
    proc = run_vouch(tmp_path, PLUGIN, stdin, extra_env)
    return [json.loads(out) for out in proc.stdout.splitlines()], proc


FIELDS = {"publish": {"name": "hello", "vers": "0.2.0", "cksum": "ab" * 32}, "yank": {"name": "hello", "vers": "0.1.0"}}


def get_request(op: str = "read", kind: str = "get", *, flattened: bool = True, nested: bool = True,
                version: int = 1, fields: dict | None = None) -> dict:
    """A request line; cargo-vouch sends the action both flattened (Cargo) and nested (Vouch)."""
    action = {"kind": kind, **({"operation": op} if kind == "get" else {}), **(FIELDS.get(op, {}) if fields is None else fields)}
    request: dict = {"v": version, "registry": {"index-url": "sparse+https://cargo.corp.example/index/", "name": "corp"}}
    if flattened:
        request.update(action)
    if nested:
        request["action"] = action
    request["args"] = []
    return request


PLUGIN = ["credential", "cargo", "--", "--cargo-plugin"]


def test_vouch_double_logged_out(tmp_path: Path) -> None:
    out, proc = provider(tmp_path, [get_request()])
    assert proc.returncode == 0
    assert out == [
        {"v": [1]},
        {"kind": "not-found", "message": "not authenticated for registry 'corp' - run 'vouch login' first"},
    ]
    log = [json.loads(line) for line in (tmp_path / "vouch.log").read_text().splitlines()]
    assert [(e["kind"], e["operation"], e["registry"], e["result"]) for e in log] == [
        ("get", "read", "corp", "not-found")
    ]


@pytest.mark.parametrize(
    "request_line",
    [get_request(nested=False), get_request("publish", fields={"name": "hello", "vers": "0.2.0"}), {"v": 1}, "not json"],
    ids=["cargo-flattened", "publish-without-cksum", "no-registry", "garbage"],
)
def test_vouch_double_refuses_what_vouch_cannot_parse(tmp_path: Path, request_line: object) -> None:
    """As Vouch's serde parse does: no answer, one stderr line, exit 1."""
    stdin = (request_line if isinstance(request_line, str) else json.dumps(request_line)) + "\n"
    proc = run_vouch(tmp_path, PLUGIN, stdin)
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == ['{"v":[1]}']
    assert proc.stderr.strip().splitlines()[-1] == "Error: failed to parse credential request"


def test_vouch_double_logged_in(tmp_path: Path, issuer: Issuer) -> None:
    env = {"VOUCH_TEST_ISSUER": issuer.url}
    login = run_vouch(tmp_path, ["login", "--sub", "dave@example.com", "--lifetime", "900"],
                      extra_env=env)
    assert login.returncode == 0, login.stderr
    session = tmp_path / "xdg" / "vouch" / "config.json"
    assert stat.S_IMODE(session.stat().st_mode) == 0o600
    token = json.loads(session.read_text())["token"]
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    ok = {"kind": "get", "token": token, "cache": {"expires": {"expiration": exp}}, "operation-independent": True}
    # One request per run, as the real provider reads one line and exits.
    answers = {
        "read": (get_request(), ok),
        "publish": (get_request("publish"), ok),
        "nested only": (get_request(flattened=False), ok),
        "login": (get_request(kind="login"), {"kind": "url-not-supported", "message": "use 'vouch login' to authenticate"}),
        "logout": (get_request(kind="logout"), {"kind": "logout"}),
        "unknown kind": (get_request(kind="unknown-kind"), {"kind": "operation-not-supported"}),
        "version 2": (get_request(version=2),
                      {"kind": "unsupported-version", "message": "unsupported protocol version 2, expected 1"}),
    }
    for case, (request_line, expected) in answers.items():
        out, proc = provider(tmp_path, [request_line])
        assert proc.returncode == 0, case
        assert out == [{"v": [1]}, expected], case
    status = run_vouch(tmp_path, ["status"])
    assert "dave@example.com" in status.stdout and token not in status.stdout
    assert token not in (tmp_path / "vouch.log").read_text()

    logout = run_vouch(tmp_path, ["logout"])
    assert logout.returncode == 0 and not session.exists()


def test_vouch_double_hands_out_expired_tokens(tmp_path: Path, issuer: Issuer) -> None:
    """Like the real CLI it does not check exp: the proxy has to cope."""
    session = tmp_path / "home" / ".config" / "vouch" / "config.json"
    session.parent.mkdir(parents=True)
    expired = issuer.mint(exp=int(time.time()) - 60)
    session.write_text(json.dumps({"token": expired}))
    out, _ = provider(tmp_path, [get_request()], {"XDG_CONFIG_HOME": ""})
    assert out[1]["token"] == expired
    assert out[1]["cache"]["expires"]["expiration"] < time.time()


def test_vouch_double_says_session_for_a_token_without_exp(tmp_path: Path) -> None:
    session = tmp_path / "home" / ".config" / "vouch" / "config.json"
    session.parent.mkdir(parents=True)
    session.write_text(json.dumps({"token": "opaque-session-token"}))
    out, _ = provider(tmp_path, [get_request()], {"XDG_CONFIG_HOME": ""})
    assert out[1] == {"kind": "get", "token": "opaque-session-token", "cache": "session", "operation-independent": True}


def test_strict_cargo_provider_reads_flattened_requests_and_answers_wrapped(tmp_path: Path, issuer: Issuer) -> None:
    env = {"VOUCH_TEST_ISSUER": issuer.url}
    assert run_vouch(tmp_path, ["login", "--sub", "dave@example.com"], extra_env=env).returncode == 0
    token = json.loads((tmp_path / "xdg" / "vouch" / "config.json").read_text())["token"]
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    stdin = "".join(json.dumps(line) + "\n" for line in (get_request(), get_request("publish"), get_request(nested=False)))
    proc = subprocess.run(
        [str(BIN / "provider-cargo-strict"), "--cargo-plugin"], input=stdin, capture_output=True, text=True,
        timeout=30, env={**os.environ, "PATH": os.pathsep.join([str(VOUCH_BIN), os.environ["PATH"]]),
                         "HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "xdg")},
    )
    ok = {"Ok": {"kind": "get", "token": token, "operation_independent": True, "cache": "expires", "expiration": exp}}
    assert [json.loads(line) for line in proc.stdout.splitlines()] == [{"v": [1]}, ok, ok, ok]

    nested_only = subprocess.run(
        [str(BIN / "provider-cargo-strict"), "--cargo-plugin"], input=json.dumps(get_request(flattened=False)) + "\n",
        capture_output=True, text=True, timeout=30,
    )
    answer = json.loads(nested_only.stdout.splitlines()[1])
    assert answer["Err"]["kind"] == "other" and "missing field `kind`" in answer["Err"]["message"]


@pytest.mark.parametrize(
    ("name", "stdout_lines", "returncode", "stderr"),
    [("provider-crash", ['{"v":[1]}'], 3, "boom"),
     ("provider-garbage", ['{"v":[1]}', "this is not json"], 0, "")],
)
def test_broken_providers(name: str, stdout_lines: list[str], returncode: int, stderr: str) -> None:
    proc = subprocess.run(
        [str(BIN / name), "--cargo-plugin"], input=json.dumps(get_request()) + "\n",
        capture_output=True, text=True, timeout=30,
    )
    assert proc.stdout.splitlines() == stdout_lines
    assert proc.returncode == returncode and stderr in proc.stderr


def test_hanging_provider_says_hello_then_nothing() -> None:
    proc = subprocess.Popen(
        [str(BIN / "provider-hang"), "--cargo-plugin"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline() == '{"v":[1]}\n'
        proc.stdin.write(json.dumps(get_request()) + "\n")
        proc.stdin.flush()
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=0.5)
    finally:
        proc.kill()
        proc.wait()
