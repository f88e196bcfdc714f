"""The CI provider against a real (local) OAuth server over verified HTTPS.

The server checks the client's authentication as the real one would, so a token here
means the Basic header or the signed assertion was right on the wire.
"""

import asyncio
import logging
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cargo_vouch.config import ClientCredentialsConfig, ConfigError, RegistryConfig, load_config
from cargo_vouch.protocol import Expires, ProviderError, Publish, Read
from cargo_vouch.providers import provider_for
from cargo_vouch.providers.client_credentials import ClientCredentialsProvider, basic_authorization
from cargo_vouch.providers.token_cache import EXPIRY_MARGIN_SECONDS, TokenCache
from examples.demo.issuer import Issuer
from examples.demo.tls import TestPki, make_test_pki
from tests.fixtures.oauth import JWT_BEARER_ASSERTION, OAuthServer

INDEX = "sparse+https://cargo.corp.example/index/"
SECRET = "s3cret+with:odd%chars and space"
SECRET_ENV = "VOUCH_CLIENT_SECRET"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return make_test_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def oauth_server(tmp_path_factory: pytest.TempPathFactory, pki: TestPki):
    """One issuer and one OAuth server for the module (each stop costs a poll interval)."""
    with Issuer() as issuer, OAuthServer(tmp_path_factory.mktemp("oauth"), pki, issuer) as server:
        yield server


@pytest.fixture
def oauth(oauth_server: OAuthServer) -> OAuthServer:
    """The shared server, reset, knowing the client `ci-builder` with secret SECRET."""
    oauth_server.reset()
    oauth_server.add_client_secret("ci-builder", SECRET)
    return oauth_server


def write_key(path: Path, key) -> Path:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return path


@pytest.fixture
def ec_key(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    return key, write_key(tmp_path / "client-ec.pem", key)


def registry(oauth: OAuthServer, timeout: float = 30.0, **credentials) -> RegistryConfig:
    settings = {"issuer": oauth.issuer_url, "client_id": "ci-builder", "audience": INDEX.removeprefix("sparse+")}
    if "private_key" not in credentials:
        settings["client_secret_env"] = SECRET_ENV
    settings.update(credentials)
    return RegistryConfig(
        name="corp", index=INDEX, provider_timeout=timeout, client_credentials=ClientCredentialsConfig(**settings)
    )


def provider(oauth: OAuthServer, **credentials) -> ClientCredentialsProvider:
    made = provider_for(registry(oauth, **credentials), upstream_ca=oauth.pki.ca_cert)
    assert isinstance(made, ClientCredentialsProvider)
    return made


def registry_claims(oauth: OAuthServer, token: str) -> dict:
    """Verify the token as the test registry does: the Issuer's JWKS, its `iss`, at+jwt."""
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt" and header["alg"] == "ES256"
    keys = {k.key_id: k.key for k in jwt.PyJWKSet.from_dict(oauth.issuer.jwks()).keys}
    return jwt.decode(
        token,
        keys[header["kid"]],
        algorithms=["ES256"],
        issuer=oauth.issuer.url,
        options={"require": ["exp", "nbf", "iat", "iss", "sub"], "verify_aud": False},
    )


async def test_client_secret_gets_an_expiring_token(oauth, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, SECRET)
    before = time.time()
    token = await provider(oauth).get(Read())
    assert isinstance(token.cache, Expires) and token.operation_independent
    assert int(before) + 600 <= token.expiration <= int(time.time()) + 600
    [request] = oauth.token_requests
    assert (request.granted, request.client_id, request.auth_method) == (True, "ci-builder", "client_secret_basic")
    assert request.audience == "https://cargo.corp.example/index/"
    claims = registry_claims(oauth, token.value)
    assert claims["sub"] == "ci-builder" and claims["hardware_verified"] is False
    assert claims["aud"] == "https://cargo.corp.example/index/"


@pytest.mark.parametrize("kind", ["ec", "rsa"])
async def test_private_key_jwt_gets_a_token(oauth, tmp_path, kind):
    key = ec.generate_private_key(ec.SECP256R1()) if kind == "ec" else rsa.generate_private_key(65537, 2048)
    path = write_key(tmp_path / f"client-{kind}.pem", key)
    oauth.add_client_key("ci-signer", key.public_key(), kid="k-1")
    token = await provider(oauth, client_id="ci-signer", private_key=path, key_id="k-1").get(Read())
    [request] = oauth.token_requests
    assert (request.granted, request.client_id, request.auth_method) == (True, "ci-signer", "private_key_jwt")
    assert registry_claims(oauth, token.value)["sub"] == "ci-signer"


async def test_each_assertion_is_new(oauth, ec_key):
    """A fresh jti per request: the server refuses replays, and both requests pass."""
    key, path = ec_key
    oauth.add_client_key("ci-signer", key.public_key())
    cc = provider(oauth, client_id="ci-signer", private_key=path)
    await cc.get(Read())
    await cc.get(Read())
    assert [r.granted for r in oauth.token_requests] == [True, True]


def test_the_server_refuses_a_replayed_assertion(oauth, ec_key):
    """The fixture's own check, so that the test above means something."""
    key, _ = ec_key
    oauth.add_client_key("ci-signer", key.public_key())
    now = int(time.time())
    claims = {"iss": "ci-signer", "sub": "ci-signer", "aud": oauth.token_endpoint, "iat": now, "exp": now + 60, "jti": "j1"}
    form = urlencode(
        {
            "grant_type": "client_credentials",
            "audience": "x",
            "client_assertion_type": JWT_BEARER_ASSERTION,
            "client_assertion": jwt.encode(claims, key, algorithm="ES256"),
        }
    ).encode()
    import ssl

    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}),
        urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=str(oauth.pki.ca_cert))),
    )
    statuses = []
    for _ in range(2):
        try:
            with opener.open(urllib.request.Request(oauth.token_endpoint, data=form), timeout=10) as response:
                statuses.append(response.status)
        except urllib.error.HTTPError as exc:
            statuses.append(exc.code)
    assert statuses == [200, 401]
    assert "replayed" in oauth.token_requests[-1].reason


async def test_wrong_secret_names_the_variable_and_never_the_secret(oauth, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "not-the-secret-" + "x" * 8
    monkeypatch.setenv(SECRET_ENV, wrong)
    with pytest.raises(ProviderError) as info:
        await provider(oauth).get(Read())
    message = info.value.message
    assert info.value.kind == "other"
    assert f"token endpoint {oauth.token_endpoint} refused client `ci-builder`: invalid_client" in message
    assert f"check {SECRET_ENV}" in message
    assert wrong not in message and SECRET not in message and "\n" not in message
    assert wrong not in caplog.text
    [request] = oauth.token_requests
    assert not request.granted and request.error == "invalid_client"


async def test_unset_secret_is_not_found_naming_the_variable(oauth, monkeypatch):
    monkeypatch.delenv(SECRET_ENV, raising=False)
    cc = provider(oauth)
    with pytest.raises(ProviderError) as info:
        await cc.get(Read())
    assert info.value.kind == "not-found"
    assert info.value.message.startswith(f"{SECRET_ENV} is not set: the client-credentials provider for registry `corp`")
    assert SECRET_ENV in cc.login_hint
    assert oauth.token_requests == []  # nothing was sent without a secret


async def test_unknown_client_is_a_clear_error(oauth, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, SECRET)
    with pytest.raises(ProviderError, match=r"refused client `ci-nobody`: invalid_client \(unknown client ci-nobody\)"):
        await provider(oauth, client_id="ci-nobody").get(Read())


async def test_wrong_key_is_a_clear_error(oauth, ec_key, tmp_path):
    key, _ = ec_key
    oauth.add_client_key("ci-signer", key.public_key())
    other = write_key(tmp_path / "other.pem", ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(ProviderError) as info:
        await provider(oauth, client_id="ci-signer", private_key=other).get(Read())
    assert "refused client `ci-signer`: invalid_client" in info.value.message
    assert f"check that the public key of {other} is registered for `ci-signer`" in info.value.message
    assert "InvalidSignatureError" in oauth.token_requests[-1].reason


async def test_one_token_request_per_lifetime_through_the_cache(oauth, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, SECRET)
    now = [time.time()]
    cache = TokenCache(clock=lambda: now[0])
    cc = provider(oauth)
    first = await asyncio.gather(*(cache.get("corp", cc, Read()) for _ in range(5)))
    again = [await cache.get("corp", cc, op) for op in (Read(), Publish("hello", "0.1.0", "00" * 32), Read())]
    assert len({issued.token.value for issued in first + again}) == 1
    assert len(oauth.granted) == 1 and cache.provider_calls == 1
    assert oauth.discovery_requests == 1

    now[0] += 600 - EXPIRY_MARGIN_SECONDS + 1  # within the margin: a new token
    renewed = await cache.get("corp", cc, Read())
    assert renewed.token.value != first[0].token.value
    assert len(oauth.granted) == 2
    assert oauth.discovery_requests == 1  # the endpoint stays known for the provider's life


async def test_without_expires_in_the_tokens_own_exp_counts(oauth, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, SECRET)
    oauth.expires_in = None
    token = await provider(oauth).get(Read())
    assert isinstance(token.cache, Expires)
    assert token.expiration == registry_claims(oauth, token.value)["exp"]


async def test_scope_and_audience_are_sent(oauth, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, SECRET)
    await provider(oauth, audience="urn:corp:cargo", scope="cargo:read cargo:publish").get(Read())
    [request] = oauth.token_requests
    assert (request.audience, request.scope) == ("urn:corp:cargo", "cargo:read cargo:publish")


async def test_proxy_variables_are_not_used(oauth, monkeypatch):
    """The exchange goes straight to the server, even where HTTPS_PROXY names this proxy."""
    monkeypatch.setenv(SECRET_ENV, SECRET)
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    assert (await provider(oauth).get(Read())).value


async def test_discovery_issuer_mismatch_is_refused(oauth, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, SECRET)
    oauth.discovery_overrides = {"issuer": "https://evil.example"}
    with pytest.raises(ProviderError) as info:
        await provider(oauth).get(Read())
    assert "names the issuer 'https://evil.example', not the configured" in info.value.message
    assert oauth.token_requests == []


async def test_token_endpoint_must_be_https(oauth, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, SECRET)
    oauth.discovery_overrides = {"token_endpoint": f"http://localhost:{oauth.port}/oauth/token"}
    with pytest.raises(ProviderError, match="token_endpoint .* is not an https URL"):
        await provider(oauth).get(Read())
    assert oauth.token_requests == []


async def test_redirects_are_not_followed(oauth, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, SECRET)
    oauth.discovery_overrides = {"token_endpoint": f"{oauth.issuer_url}/moved/token"}
    oauth.add_redirect("/moved/token", oauth.token_endpoint)
    with pytest.raises(ProviderError, match=r"redirected \(307\)"):
        await provider(oauth).get(Read())
    assert oauth.token_requests == []


async def test_tls_is_verified(oauth, monkeypatch):
    """Without the test CA (upstream-ca), the server's certificate is not trusted."""
    monkeypatch.setenv(SECRET_ENV, SECRET)
    with pytest.raises(ProviderError, match="cannot reach localhost:.*TLS certificate not trusted.*upstream-ca"):
        await provider_for(registry(oauth)).get(Read())
    assert oauth.discovery_requests == 0


async def test_a_slow_server_is_an_error_not_a_hang(oauth, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, SECRET)
    oauth.delay = 2.0
    started = time.monotonic()
    with pytest.raises(ProviderError, match="did not answer within 0.5 s"):
        await provider_for(registry(oauth, timeout=0.5), upstream_ca=oauth.pki.ca_cert).get(Read())
    assert time.monotonic() - started < 1.5


async def test_unreachable_server(monkeypatch, pki):
    monkeypatch.setenv(SECRET_ENV, SECRET)
    config = ClientCredentialsConfig("https://127.0.0.1:9", "ci-builder", "aud", client_secret_env=SECRET_ENV)
    cc = provider_for(RegistryConfig("corp", INDEX, client_credentials=config), upstream_ca=pki.ca_cert)
    with pytest.raises(ProviderError, match="cannot reach 127.0.0.1:9: connection refused"):
        await cc.get(Read())


def test_basic_authorization_form_encodes_both_parts():
    """RFC 6749 §2.3.1; the server above decodes it, `test_client_secret…` proves the round trip."""
    import base64

    value = basic_authorization("ci:builder", "a b+c")
    assert base64.b64decode(value.removeprefix("Basic ")) == b"ci%3Abuilder:a+b%2Bc"


async def test_from_the_config_file(oauth, tmp_path, ec_key, monkeypatch):
    """The whole path: TOML, a key path relative to the config file, provider_for, a token."""
    key, path = ec_key
    oauth.add_client_key("ci-signer", key.public_key())
    config_path = tmp_path / "config.toml"
    config_path.write_text(
        f"""
[proxy]
upstream-ca = "{oauth.pki.ca_cert}"

[registries.corp]
index = "{INDEX}"
[registries.corp.client-credentials]
issuer = "{oauth.issuer_url}"
client-id = "ci-signer"
private-key = "{path.name}"
"""
    )
    config = load_config(config_path)
    cc = provider_for(config.registries["corp"], config.proxy.upstream_ca)
    assert "ci-signer" in cc.description
    await cc.get(Read())
    assert oauth.granted[0].audience == "https://cargo.corp.example/index/"


def test_issuer_must_be_https(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(
        f'[registries.corp]\nindex = "{INDEX}"\n[registries.corp.client-credentials]\n'
        'issuer = "http://vouch.corp.example"\nclient-id = "ci"\nclient-secret-env = "S"\n'
    )
    with pytest.raises(ConfigError, match=r"registries\.corp\.client-credentials\.issuer: .* is not an https URL"):
        load_config(path)
