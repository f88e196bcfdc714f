"""What a child of the proxy (a provider, git) gets of its environment: no secret the proxy
reads, under its name or inside another value."""

from __future__ import annotations

from cargo_vouch.children import environment_without_secrets

SECRET = "ci-client-secret-5d1e8a2b"


def test_a_child_gets_no_secret_under_any_name_nor_inside_another_value() -> None:
    base = {
        "VOUCH_CLIENT_SECRET": SECRET,
        "CI_SECRETS_JSON": f'{{"vouch_client_secret":"{SECRET}"}}',
        "CARGO_REGISTRIES_TEAM_TOKEN": "real-team-token-91ab77",
        "TOKEN_URL": "https://x:real-team-token-91ab77@h/",
        "PATH": "/usr/bin",
    }
    assert environment_without_secrets({"VOUCH_CLIENT_SECRET"}, base) == {"PATH": "/usr/bin"}


def test_a_value_that_is_not_utf_8_is_passed_on_not_a_crash() -> None:
    base = {"VOUCH_CLIENT_SECRET": SECRET, "LEGACY": "caf\udce9"}  # os.environ's form of b"caf\xe9"
    assert environment_without_secrets({"VOUCH_CLIENT_SECRET"}, base) == {"LEGACY": "caf\udce9"}


def test_a_secret_written_into_basic_auth_or_a_url_is_found_encoded() -> None:
    """A CI job often hands the same secret on as `Basic base64(id:secret)` or inside a URL."""
    import base64
    from urllib.parse import quote

    secret = "ci/client+secret=9f3a61c0d2e4"
    base = {"VOUCH_CLIENT_SECRET": secret, "PATH": "/usr/bin"}
    for prefix in ("ci:", "c:", "cli:"):  # each of base64's three alignments
        base[f"BASIC_{len(prefix)}"] = "Basic " + base64.b64encode(f"{prefix}{secret}".encode()).decode()
        base[f"URLSAFE_{len(prefix)}"] = base64.urlsafe_b64encode(f"{prefix}{secret}".encode()).decode()
    base["URL"] = f"https://ci:{quote(secret, safe='')}@issuer.example/"
    assert environment_without_secrets({"VOUCH_CLIENT_SECRET"}, base) == {"PATH": "/usr/bin"}
