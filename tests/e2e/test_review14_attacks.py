"""Review 14: attacks on 7ba8143..4d60cdf (the import seal, run's env/cmdline scans, the
overflow-uid refusal, urls_overlap / index_hosts). Tests not named `test_held_*` FAIL while
the attack works (see /work/notes/review14.md)."""

from __future__ import annotations

import codecs
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures.paths import REPO

pytestmark = pytest.mark.e2e

SITE = Path(__import__("mitmproxy").__file__).parent.parent

#: Jinja2 compiles a template to Python and exec()s it: no import, so no finder is asked.
#: No string literal: Jinja's lexer decodes those with `unicode-escape`, a codec not preloaded.
SSTI = "LOOT pid={{ cycler.__init__.__globals__.os.getpid() }} env={{ cycler.__init__.__globals__.os.environ }}"


def _user_owned_mitmproxy(tmp_path: Path) -> Path:
    """mitmproxy in a directory of the user's own (a user venv, pipx, ~/.local): a copy
    first on PYTHONPATH stands for it without touching the shared venv."""
    site = tmp_path / "site"
    shutil.copytree(SITE / "mitmproxy", site / "mitmproxy", ignore=shutil.ignore_patterns("__pycache__"))
    return site


def test_cmd_runs_code_in_mitmdump_s_proxy_through_the_onboarding_template(world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """mitmdump -s keeps mitmproxy's onboarding app (http://mitm.it/), a Flask app whose
    Jinja templates are read from the mitmproxy package on first request and exec()d as
    compiled Python: the seal (a meta_path finder) is never asked. A build rewrites
    index.html, asks the proxy for http://mitm.it/ and reads the CI secret in the answer."""
    site = _user_owned_mitmproxy(tmp_path)
    secret = "ci-client-secret-" + os.urandom(8).hex()
    world.env.update(PYTHONPATH=f"{site}:{REPO}", VOUCH_CLIENT_SECRET=secret)
    world.login()
    world.write_config(f'[registries.corp]\nindex = "{world.registry.sparse_index_url}"\n')
    proxy = world.start_proxy()
    assert str(site) in subprocess.run([sys.executable, "-c", "import mitmproxy;print(mitmproxy.__file__)"],
                                       env=world.env, capture_output=True, text=True).stdout
    # --- what the build does, after the proxy is up (and sealed) ---
    (site / "mitmproxy/addons/onboardingapp/templates/index.html").write_text(SSTI)
    got = subprocess.run(["curl", "-s", "-x", proxy.url, "http://mitm.it/"], capture_output=True, text=True, timeout=30).stdout
    proxy.stop()
    print(got[:500])
    print(proxy.log()[-3000:])
    assert secret not in got, f"the build's template ran in the proxy: {got[:200]}"


def _shapes(proxy_url: str, world, token: str) -> None:  # type: ignore[no-untyped-def]
    """Many request shapes through the proxy; failures of the requests themselves are fine."""
    reg = world.registry
    base = f"https://localhost:{reg.port}"
    idx = reg.sparse_index_url.removeprefix("sparse+")
    api = reg.api_url.rstrip("/")
    ca = str(world.cainfo)
    c = ["curl", "-s", "-o", "/dev/null", "-m", "10", "-x", proxy_url, "--cacert", ca]
    runs = [
        c + [idx + "config.json"],
        c + [idx + "he/ll/hello"],
        c + ["--http2", idx + "config.json"],
        c + ["--http1.0", idx + "config.json"],
        c + ["-H", "Accept-Encoding: gzip, deflate, br, zstd", "--compressed", idx + "config.json"],
        c + ["-H", "Accept-Charset: cp1252", "-H", "Content-Type: text/plain; charset=cp1252", "--data-binary", "\xe9t\xe9",
             api + "/api/v1/crates/hello/0.1.0/yank"],
        c + ["-X", "DELETE", "-H", "Content-Type: application/json; charset=shift_jis", api + "/api/v1/crates/hello/0.1.0/yank"],
        c + ["-X", "PUT", "-H", "Content-Type: application/octet-stream", "--data-binary", "\x01garbage",
             api + "/api/v1/crates/new"],
        c + ["-H", "Transfer-Encoding: chunked", "--data-binary", "x" * 10, api + "/api/v1/crates/hello/0.1.0/unyank"],
        c + ["-X", "OPTIONS", idx + "config.json"],
        c + ["-I", idx + "config.json"],
        c + ["-H", "Expect: 100-continue", "--data-binary", "y" * 2000, idx + "config.json"],
        c + ["-H", "X-Odd: \xff\xfe", idx + "config.json"],
        c + ["-H", "Connection: Upgrade", "-H", "Upgrade: websocket", "-H", "Sec-WebSocket-Version: 13",
             "-H", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", idx + "config.json"],
        c + [f"http://localhost:{reg.port}/sparse/config.json"],
        c + [f"https://127.0.0.1:{reg.port}/sparse/config.json"],  # another name: tunnelled or TLS error
        c + ["-k", "https://xn--bcher-kva.invalid/"],
        c + ["-k", "https://b\u00fccher.invalid/"],
        c + ["-k", "https://[::1]:1/"],
        c + ["-k", "https://nonexistent.invalid/"],
        c + ["http://nonexistent.invalid/"],
        c + ["-k", f"https://localhost.:{reg.port}/sparse/config.json"],
        c + ["-k", f"https://LOCALHOST:{reg.port}/sparse/config.json"],
        c + [f"{base}/sparse/%63onfig.json"],
        c + [f"{base}/sparse/../sparse/config.json", "--path-as-is"],
        c + ["http://mitm.it/"],  # mitmdump's onboarding app (not in run / cargo vouch proxy)
    ]
    for argv in runs:
        subprocess.run(argv, capture_output=True, timeout=30)
    # raw garbage and a CONNECT with a bad authority
    import socket
    for raw in [b"\x16\x03\x01\x00\x05hello\r\n\r\n", b"GET / HTTP/1.1\r\nHost: \xe9\xe9\r\n\r\n",
                b"CONNECT b\xc3\xbccher.invalid:443 HTTP/1.1\r\nHost: x\r\n\r\n",
                b"CONNECT localhost:" + str(reg.port).encode() + b" HTTP/1.1\r\n\r\n\x16\x03\x01\x00\x02\x00\x00",
                b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00" * 30]:
        with socket.create_connection(("127.0.0.1", int(proxy_url.rsplit(":", 1)[1])), timeout=5) as s:
            s.sendall(raw)
            try:
                s.recv(65536)
            except OSError:
                pass


@pytest.mark.parametrize("cli", [False, True], ids=["mitmdump-s", "cargo-vouch-proxy"])
def test_no_request_shape_makes_the_sealed_proxy_refuse_an_import(world, cli: bool) -> None:  # type: ignore[no-untyped-def]
    world.login()
    world.write_config(f'[registries.corp]\nindex = "{world.registry.sparse_index_url}"\n')
    proxy = world.start_proxy(cli=cli)
    _shapes(proxy.url, world, "")
    time.sleep(1)
    before_stop = proxy.log()
    proxy.stop()
    print("REFUSED WHILE SERVING:", [line for line in before_stop.splitlines() if "refused to import" in line])
    refused = sorted({line.split("refused to import ")[1].split(" ")[0] for line in proxy.log().splitlines()
                      if "refused to import" in line})
    assert not refused, f"imports refused after start-up: {refused}"


def test_run_survives_an_environment_variable_that_is_not_utf_8(tmp_path: Path) -> None:
    """child_environment encodes every variable's value (str.encode(), strict) to look for the
    secret in it: a value with a byte that is not UTF-8 (os.environ holds it as a surrogate)
    makes `run` die with a traceback, for any CI job that has one such variable and a secret."""
    from tests.e2e.test_review13_attacks import _ci_env, _user_install

    bin_dir = _user_install(tmp_path)
    env = {k.encode(): v.encode() for k, v in _ci_env(tmp_path, bin_dir, "ci-client-secret-" + os.urandom(8).hex(),
                                                       "real-team-token-" + os.urandom(8).hex()).items()}
    env[b"LEGACY_LATIN1_VALUE"] = b"caf\xe9"
    result = subprocess.run([str(bin_dir / "cargo-vouch"), "run", "--", "/bin/echo", "CMD-RAN"],
                            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert "CMD-RAN" in result.stdout, result.stderr[-1500:]


def test_run_passes_cmd_the_secret_in_a_basic_auth_or_url_encoded_copy(tmp_path: Path) -> None:
    """Only the literal bytes are looked for: the same secret in a CI job's other variables as
    Basic auth (base64 of id:secret) or percent-encoded in a URL reaches CMD."""
    import base64
    from urllib.parse import quote

    from tests.e2e.test_review13_attacks import _ci_env, _user_install

    bin_dir = _user_install(tmp_path)
    secret = "ci/client+secret=" + os.urandom(8).hex()
    env = _ci_env(tmp_path, bin_dir, secret, "real-team-token-" + os.urandom(8).hex())
    env["ISSUER_BASIC_AUTH"] = "Basic " + base64.b64encode(f"ci:{secret}".encode()).decode()
    env["ISSUER_URL_WITH_CREDS"] = f"https://ci:{quote(secret, safe='')}@issuer.example/"
    script = ("import base64,os,sys; from urllib.parse import unquote; "
              "print('B64', base64.b64decode(os.environ.get('ISSUER_BASIC_AUTH','Basic ')[6:]).decode()); "
              "print('URL', unquote(os.environ.get('ISSUER_URL_WITH_CREDS','')))")
    result = subprocess.run([str(bin_dir / "cargo-vouch"), "run", "--", "/usr/bin/python3", "-c", script],
                            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    print(result.stdout, result.stderr[-800:])
    assert secret not in result.stdout


def test_a_provider_command_cmd_rewrites_runs_in_the_proxy_s_environment_with_a_copy_of_the_secret(world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """run now drops from CMD's environment every variable that holds the CI secret (a JSON
    blob of the job's secrets), but the proxy's provider children get
    environment_without_secrets(), which drops by NAME only. The provider command is a file
    of the user's own (here ~/bin/get-token, as `cargo install` puts helpers in ~/.cargo/bin):
    CMD rewrites it after the proxy is sealed, makes one request, and the proxy runs CMD's
    program with the secret's copy in its environment."""
    secret = "ci-client-secret-" + os.urandom(8).hex()
    helper = world.home / "bin" / "get-token"
    helper.parent.mkdir()
    helper.write_text("#!/bin/sh\nexit 1\n")  # no token yet: the first request asks again
    helper.chmod(0o755)
    loot = tmp_path / "loot.txt"
    world.write_config(
        '[registries.corp]\nindex = "sparse+https://localhost:1/corp/"\n'
        '[registries.corp.client-credentials]\nissuer = "https://localhost:1"\nclient-id = "ci"\n'
        'client-secret-env = "VOUCH_CLIENT_SECRET"\n'
        f'[registries.team]\nindex = "{world.registry.sparse_index_url}"\n'
        f'credential-provider = "cargo:token-from-stdout {helper}"\n')
    evil = f"#!/bin/sh\nenv > {loot}\necho stolen\n"
    cmd = (f"printf '%s' '{evil}' > {helper}; "
           f'curl -s -o /dev/null -x "$CARGO_HTTP_PROXY" --cacert "$CARGO_HTTP_CAINFO" '
           f'{world.registry.sparse_index_url.removeprefix("sparse+")}config.json; '
           f"echo CMD-SAW; grep -h {secret} {loot} || true")
    env = {**world.env, "PYTHONPATH": str(REPO), "VOUCH_CLIENT_SECRET": secret,
           "CI_SECRETS_JSON": '{"vouch_client_secret": "' + secret + '", "other": "x"}'}
    result = subprocess.run([sys.executable, "-m", world.cli_module, "run", "--", "/bin/sh", "-c", cmd],
                            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    print(result.stdout, result.stderr[-1500:])
    assert "CMD-SAW" in result.stdout
    assert secret not in result.stdout, f"CMD's program ran as the provider and saw: {result.stdout.strip()}"


class _OddServer:
    """An HTTPS server (certificate from the test CA) whose JSON answers are UTF-16 with a
    BOM: json.loads(bytes) accepts them, decoding with the `utf-16` codec."""

    def __init__(self, world, codec: str = "utf-32-le") -> None:  # type: ignore[no-untyped-def]
        self.codec = codec
        self.gets = 0
        import http.server
        import ssl
        import threading

        cert, key = world.pki.issue("odd", ["localhost"], world.root)
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _json(self, doc: str) -> None:
                body = (codecs.BOM_UTF32_LE if "32" in outer.codec else codecs.BOM_UTF16_LE) + doc.encode(outer.codec)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                outer.gets += 1
                if outer.gets == 1:  # the proxy's read while it starts fails: it reads again later
                    self.send_error(503)
                    return
                if self.path.endswith("/openid-configuration"):
                    self._json(json.dumps({"issuer": outer.url, "token_endpoint": f"{outer.url}/token"}))
                else:
                    self._json(json.dumps({"dl": f"{outer.url}/dl/", "api": f"{outer.url}/web/"}))

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self._json('{"access_token": "tok", "token_type": "Bearer", "expires_in": 300}')

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://localhost:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.mark.parametrize("provider", ["stdout", "client-credentials"])
def test_held_a_utf_16_or_32_json_answer_after_start_up_is_decoded(world, provider: str) -> None:  # type: ignore[no-untyped-def]
    """json.loads(bytes) picks the codec from the BOM; `encodings.utf_16` is not in PRELOAD:
    a registry's config.json (or an issuer's answer) in UTF-16 is refused as an import
    (LookupError, which parse_index_config / _json_object do not catch)."""
    odd = _OddServer(world)
    if provider == "stdout":
        table = 'credential-provider = "cargo:token-from-stdout /bin/echo tok"\n'
    else:
        table = (f'[registries.odd.client-credentials]\nissuer = "{odd.url}"\nclient-id = "ci"\n'
                 'client-secret-env = "VOUCH_CLIENT_SECRET"\n')
        world.env["VOUCH_CLIENT_SECRET"] = "ci-client-secret-" + os.urandom(8).hex()
    world.write_config(f'[registries.odd]\nindex = "sparse+{odd.url}/idx/"\n{table}')
    proxy = world.start_proxy(cli=True)
    for _ in range(2):
        subprocess.run(["curl", "-s", "-o", "/dev/null", "-m", "10", "-x", proxy.url, "--cacert", str(world.cainfo),
                        f"{odd.url}/idx/config.json"], capture_output=True, timeout=30)
    time.sleep(0.5)
    proxy.stop()
    odd.server.shutdown()
    print(proxy.log()[-2500:])
    refused = [line for line in proxy.log().splitlines() if "refused to import" in line]
    assert not refused, refused
