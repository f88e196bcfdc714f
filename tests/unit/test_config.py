"""Bad config stops start-up with one line naming file, key and problem."""

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from cargo_vouch.config import ClientCredentialsConfig, ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_full_config(tmp_path):
    import certifi

    ca = tmp_path / "corp.pem"
    ca.write_bytes(open(certifi.where(), "rb").read())
    path = write(
        tmp_path,
        f"""
[proxy]
listen = "127.0.0.1:9100"
upstream-ca = "{ca}"

[registries.corp]
index = "sparse+https://cargo.corp.example/index/"
credential-provider = "vouch credential cargo --"
token-prefix = "Bearer "
prefixes = ["https://mirror.corp.example/crates/"]
allow-publish = true
""",
    )
    config = load_config(path)
    assert str(config.proxy.listen) == "127.0.0.1:9100"
    assert config.proxy.upstream_ca == ca
    corp = config.registries["corp"]
    assert corp.credential_provider == ("vouch", "credential", "cargo", "--")
    assert corp.token_prefix == "Bearer "
    assert corp.allow_publish and corp.is_sparse


def test_defaults(tmp_path):
    config = load_config(write(tmp_path, '[registries.corp]\nindex = "https://git.corp.example/index.git"\n'))
    corp = config.registries["corp"]
    assert corp.credential_provider == ("vouch", "credential", "cargo", "--")
    assert corp.token_prefix == "" and not corp.allow_publish
    assert str(config.proxy.listen) == "127.0.0.1:9001"


@pytest.mark.parametrize(
    "text,needle",
    [
        ('[proxy]\nlisten = "0.0.0.0:9001"\n', "proxy.listen: '0.0.0.0' is not a loopback address"),
        ('[proxy]\nlisten = "192.168.1.4:9001"\n', "proxy.listen"),
        ('[proxy]\nlistne = "127.0.0.1:1"\n', "proxy.listne: unknown key"),
        ('[registries.corp]\nindex = "http://cargo.corp.example/index/"\n', "registries.corp.index: 'http://cargo.corp.example/index/' is not an https URL"),
        ('[registries.corp]\nindx = "https://x/"\n', "registries.corp.indx: unknown key"),
        ('[registries.corp]\n', "registries.corp.index: missing"),
        ('[registries.corp]\nindex = "sparse+https://x/index"\n', "must end with '/'"),
        ('[registries.corp]\nindex = "https://x/i.git"\nprefixes = ["http://x/dl/"]\n', "registries.corp.prefixes"),
        ('[registries.corp]\nindex = "https://x/i.git"\ncredential-provider = "cargo:libsecret"\n', "not supported"),
        ('[registries.corp]\nindex = "https://user:pw@x/i.git"\n', "credentials in the URL"),
        ('[registries]\ncorp = 1\n', "registries.corp: must be a table"),
        ("[proxy\n", "invalid TOML"),
        ('[proxy]\nlisten = "localhost:0"\n', "out of range"),
        ('[registries.corp]\nindex = "https://x/i.git"\nprovider-timeout = nan\n', "finite"),
        ('[registries.corp]\nindex = "https://x/i.git"\nprovider-timeout = inf\n', "finite"),
        ('[registries.corp]\nindex = "https://x/i.git"\ntoken-prefix = "Bearer x\\r\\nX-Evil: 1"\n', "token-prefix"),
        ('[registries.corp]\nindex = "sparse+https://x/a/../index/"\n', "dot segments"),
        ('[registries.corp]\nindex = "sparse+https://[::1/x/"\n', "'https://[::1/x/' is not a valid URL (Invalid IPv6 URL)"),
        ('[registries.corp]\nindex = "sparse+https://cargo corp.example/index/"\n', "space or control character"),
        ('[registries.corp]\nindex = "sparse+https://cargo.corp.example:0/index/"\n', "invalid port (0)"),
        ('[registries.corp]\nindex = "sparse+https://bücher.example/index/"\n',
         "registries.corp.index: 'https://bücher.example/index/' has a non-ASCII host name; write it in its ASCII form, "
         "xn--bcher-kva.example"),
        ('[registries.corp]\nindex = "https://x/i.git"\nprefixes = ["https://dl.bücher.example/"]\n',
         "registries.corp.prefixes: 'https://dl.bücher.example/' has a non-ASCII host name"),
        ('[registries.corp]\nindex = "https://x/i.git"\nprefixes = ["https://x/%2e%2e/"]\n', "dot segments"),
        ('[registries."corp reg"]\nindex = "https://x/i.git"\n', "registry name"),
        ('[registries.corp]\nindex = "https://x/i.git"\ntouch = "yes"\n', "registries.corp.touch"),
        ('[registries.corp]\nindex = "https://x/i.git"\ntouch-timeout = 0\n', "registries.corp.touch-timeout"),
        ('[registries.corp]\nindex = "https://x/i.git"\nmax-publish-size = "12X"\n', "registries.corp.max-publish-size"),
    ],
)
def test_errors_are_one_line_with_file_and_key(tmp_path, text, needle):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert needle in message
    assert "\n" not in message


def test_named_file_must_exist(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.toml")


def test_env_names_the_file(tmp_path, monkeypatch):
    path = write(tmp_path, '[registries.corp]\nindex = "https://x/i.git"\n')
    monkeypatch.setenv("CARGO_VOUCH_CONFIG", str(path))
    assert "corp" in load_config().registries


def test_upstream_ca_must_be_pem(tmp_path):
    bogus = tmp_path / "corp.pem"
    bogus.write_text("not a certificate")
    path = write(tmp_path, f'[proxy]\nupstream-ca = "{bogus}"\n')
    with pytest.raises(ConfigError, match="proxy.upstream-ca: .* not a PEM bundle"):
        load_config(path)


CC_BASE = '[registries.corp]\nindex = "sparse+https://cargo.corp.example/index/"\n'


def test_client_credentials_with_a_secret(tmp_path):
    path = write(
        tmp_path,
        CC_BASE + '[registries.corp.client-credentials]\nissuer = "https://vouch.corp.example"\n'
        'client-id = "ci-builder"\nclient-secret-env = "VOUCH_CLIENT_SECRET"\n',
    )
    cc = load_config(path).registries["corp"].client_credentials
    assert cc == ClientCredentialsConfig(
        issuer="https://vouch.corp.example",
        client_id="ci-builder",
        audience="https://cargo.corp.example/index/",  # the index URL without "sparse+"
        client_secret_env="VOUCH_CLIENT_SECRET",
    )


def test_client_credentials_with_a_private_key(tmp_path):
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "ci.pem").write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    path = write(
        tmp_path,
        CC_BASE + '[registries.corp.client-credentials]\nissuer = "https://vouch.corp.example/"\n'
        'client-id = "ci-builder"\nprivate-key = "keys/ci.pem"\nkey-id = "k1"\n'
        'audience = "urn:corp:cargo"\nscope = "cargo:read"\n',
    )
    cc = load_config(path).registries["corp"].client_credentials
    assert cc is not None
    assert cc.private_key == keys / "ci.pem"  # relative to the config file's directory
    assert (cc.client_secret_env, cc.key_id, cc.audience, cc.scope) == (None, "k1", "urn:corp:cargo", "cargo:read")


def test_registries_without_the_table_have_none(tmp_path):
    assert load_config(write(tmp_path, CC_BASE)).registries["corp"].client_credentials is None


CC = "[registries.corp.client-credentials]\n"
GOOD = 'issuer = "https://vouch.corp.example"\nclient-id = "ci"\n'


@pytest.mark.parametrize(
    "text,needle",
    [
        (CC + GOOD + 'client-secret-env = "S"\nclient-secret = "x"\n', "client-credentials.client-secret: unknown key"),
        (CC + GOOD + 'client-secret-env = "S"\nprivate-key = "k.pem"\n', "set exactly one of client-secret-env"),
        (CC + GOOD, "registries.corp.client-credentials: set exactly one of client-secret-env"),
        ('credential-provider = "cargo:token"\n' + CC + GOOD + 'client-secret-env = "S"\n', "cannot be combined with credential-provider"),
        (CC + 'issuer = "http://vouch.corp.example"\nclient-id = "ci"\nclient-secret-env = "S"\n', "client-credentials.issuer: 'http://vouch.corp.example' is not an https URL"),
        (CC + 'client-id = "ci"\nclient-secret-env = "S"\n', "client-credentials.issuer: missing"),
        (CC + 'issuer = "https://v.example"\nclient-secret-env = "S"\n', "client-credentials.client-id: missing"),
        (CC + GOOD + 'client-secret-env = "MY-SECRET"\n', "'MY-SECRET' is not an environment variable name"),
        (CC + GOOD + 'client-secret-env = "S"\nkey-id = "k"\n', "client-credentials.key-id: only goes with private-key"),
        (CC + GOOD + 'client-secret-env = "S"\nscope = 3\n', "client-credentials.scope: must be a non-empty string"),
        (CC + GOOD + 'private-key = "missing.pem"\n', "client-credentials.private-key: {dir}/missing.pem: no such file"),
        ("client-credentials = 1\n", "registries.corp.client-credentials: must be a table"),
    ],
)
def test_client_credentials_errors(tmp_path, text, needle):
    path = write(tmp_path, CC_BASE + text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert needle.format(dir=tmp_path.resolve()) in message


@pytest.mark.parametrize(
    "key,needle",
    [
        (b"not a key\n", "not a PEM private key"),
        (
            ec.generate_private_key(ec.SECP256R1()).private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"pass"),
            ),
            "the key is encrypted",
        ),
        (
            ed25519.Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
            "neither an EC P-256 key nor an RSA key",
        ),
    ],
)
def test_client_credentials_private_key_must_be_usable(tmp_path, key, needle):
    (tmp_path / "ci.pem").write_bytes(key)
    path = write(tmp_path, CC_BASE + CC + GOOD + 'private-key = "ci.pem"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert f"registries.corp.client-credentials.private-key: {tmp_path.resolve() / 'ci.pem'}: {needle}" in str(info.value)


def test_max_publish_size_takes_bytes_or_units(tmp_path):
    from cargo_vouch.config import parse_config

    def size(value):  # type: ignore[no-untyped-def]
        data = {"registries": {"corp": {"index": "https://x/i.git", "max-publish-size": value}}}
        return parse_config(data, tmp_path / "c.toml").registries["corp"].max_publish_size

    assert size(1000) == 1000
    assert size("64M") == size("64MiB") == 64 * 1024 * 1024
    assert size("1g") == 1024**3


def test_the_sample_config_in_examples_is_valid():
    from pathlib import Path

    from cargo_vouch.config import load_config

    sample = Path(__file__).resolve().parents[2] / "examples" / "cargo-vouch.toml"
    config = load_config(sample)
    assert set(config.registries) == {"corp", "corp-ci"}
    assert config.registries["corp-ci"].client_credentials is not None


def test_an_international_host_name_stops_the_proxy_with_one_line(tmp_path, monkeypatch, capsys):
    """It used to pass the config and crash the start-up with a traceback."""
    from cargo_vouch.cli.main import main

    monkeypatch.setenv("CARGO_VOUCH_HOME", str(tmp_path / "home"))
    config = write(tmp_path, '[registries.corp]\nindex = "sparse+https://bücher.example/index/"\n')
    assert main(["--config", str(config), "ca", "init"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "xn--bcher-kva.example" in err and "Traceback" not in err


def test_a_prefix_over_another_registry_s_index_is_refused(tmp_path):
    """The first matching registry would win: team's index requests would carry corp's token."""
    path = write(tmp_path, '[registries.corp]\nindex = "sparse+https://cargo.corp.example/index/"\n'
                           'prefixes = ["https://team.corp.example/"]\n'
                           '[registries.team]\nindex = "sparse+https://team.corp.example/index/"\n')
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert str(refused.value) == (
        f"{path}: registries.corp.prefixes: https://team.corp.example/ overlaps the index of registry 'team' "
        "(https://team.corp.example/index/): one registry's requests would carry the other's token; give each registry its own URL"
    )


def test_an_index_under_another_registry_s_index_is_refused(tmp_path):
    """The first matching registry would win: b's requests would carry a's token."""
    path = write(tmp_path, '[registries.a]\nindex = "sparse+https://reg.example/teams/"\n'
                           '[registries.b]\nindex = "sparse+https://reg.example/teams/b/"\n')
    with pytest.raises(ConfigError, match=r"registries\.a\.index: https://reg\.example/teams/ overlaps the index of registry 'b'"):
        load_config(path)


def test_a_config_that_is_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "cargo-vouch.toml"
    path.write_bytes(b"\xe3\x81[proxy]\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: not valid UTF-8 at byte 0; TOML files must be UTF-8"
