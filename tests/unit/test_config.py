"""Bad config stops start-up with one line naming file, key and problem."""

from pathlib import Path

import pytest

from addon.config import ConfigError, load_config


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
        ('[registries.corp]\nindex = "https://x/i.git"\nprefixes = ["https://x/%2e%2e/"]\n', "dot segments"),
        ('[registries."corp reg"]\nindex = "https://x/i.git"\n', "registry name"),
        ('[registries.corp]\nindex = "https://x/i.git"\ntouch = true\n', "registries.corp.touch"),
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
