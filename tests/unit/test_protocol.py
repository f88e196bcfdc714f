"""Protocol v1 in both dialects: every answer shape of VOUCH.md reads as its Cargo twin."""

from __future__ import annotations

import json

import pytest

from cargo_vouch.protocol import (
    CredentialRequest,
    Dialect,
    Expires,
    Never,
    Operation,
    Owners,
    ProtocolError,
    ProviderError,
    Publish,
    Read,
    RegistryInfo,
    Session,
    Unyank,
    Yank,
    parse_response,
)

JWT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln"
EXP = 1_800_000_000


def line(message: object) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


# (Cargo's answer, Vouch's answer) for the same outcome.
TWINS = {
    "expires": (
        {"Ok": {"kind": "get", "token": JWT, "cache": "expires", "expiration": EXP, "operation_independent": True}},
        {"kind": "get", "token": JWT, "cache": {"expires": {"expiration": EXP}}, "operation-independent": True},
    ),
    "session": (
        {"Ok": {"kind": "get", "token": JWT, "cache": "session", "operation_independent": True}},
        {"kind": "get", "token": JWT, "cache": "session", "operation-independent": True},
    ),
    "never, operation-bound": (
        {"Ok": {"kind": "get", "token": JWT, "cache": "never", "operation_independent": False}},
        {"kind": "get", "token": JWT, "cache": "never", "operation-independent": False},
    ),
}


@pytest.mark.parametrize("case", TWINS)
def test_vouch_answers_read_as_their_cargo_twins(case: str) -> None:
    cargo, vouch = (parse_response(line(answer)) for answer in TWINS[case])
    assert cargo == vouch  # value, cache control and operation independence
    assert (cargo.dialect, vouch.dialect) == (Dialect.CARGO, Dialect.VOUCH)


def test_cache_forms_are_typed() -> None:
    expires, session, never = (parse_response(line(TWINS[c][1])) for c in TWINS)
    assert expires.cache == Expires(EXP) and expires.expiration == EXP
    assert session.cache == Session() and session.expiration is None
    assert never.cache == Never() and not never.operation_independent


ERRORS = {
    # Vouch logged out: the message the user must see, "run 'vouch login'" included.
    "not-found": "not authenticated for registry 'corp' - run 'vouch login' first",
    "url-not-supported": "use 'vouch login' to authenticate",
    "operation-not-supported": None,
}


@pytest.mark.parametrize("kind", ERRORS)
def test_vouch_errors_read_as_their_cargo_twins(kind: str) -> None:
    body = {"kind": kind} | ({"message": ERRORS[kind]} if ERRORS[kind] else {})
    raised = []
    for answer in ({"Err": body}, body):
        with pytest.raises(ProviderError) as info:
            parse_response(line(answer))
        raised.append(info.value)
    cargo, vouch = raised
    assert (cargo.kind, cargo.message) == (vouch.kind, vouch.message) == (kind, ERRORS[kind] or kind)
    assert (cargo.dialect, vouch.dialect) == (Dialect.CARGO, Dialect.VOUCH)


def test_vouch_unsupported_version_is_an_error_with_its_message() -> None:
    with pytest.raises(ProviderError) as info:
        parse_response(line({"kind": "unsupported-version", "message": "unsupported protocol version 2, expected 1"}))
    assert info.value.kind == "other" and "expected 1" in info.value.message


@pytest.mark.parametrize(
    "answer",
    [
        # unknown shapes
        [JWT],
        {"token": JWT},
        {"Ok": TWINS["session"][0]["Ok"], "kind": "get"},
        {"kind": "logout"},  # a logout answer to a get
        {"kind": "made-up", "message": "?"},
        {"kind": "get", "cache": "session"},  # no token
        {"Ok": {"kind": "get", "cache": "session"}},
        # unknown cache forms, in either dialect
        {"kind": "get", "token": JWT, "cache": "expires", "expiration": EXP},  # Cargo's form, unwrapped
        {"kind": "get", "token": JWT, "cache": {"expires": {}}},
        {"kind": "get", "token": JWT, "cache": {"expires": {"expiration": "soon"}}},
        {"kind": "get", "token": JWT, "cache": {"expires": {"expiration": EXP}, "never": {}}},
        {"kind": "get", "token": JWT, "cache": {"session": {}}},
        {"kind": "get", "token": JWT, "cache": "forever"},
        {"Ok": {"kind": "get", "token": JWT, "cache": {"expires": {"expiration": EXP}}}},  # Vouch's form, wrapped
        {"Ok": {"kind": "get", "token": JWT, "cache": "expires"}},
        {"Ok": {"kind": "get", "token": JWT, "cache": "unknown"}},
        {"kind": "get", "token": JWT, "cache": "session", "operation-independent": "yes"},
    ],
)
def test_unknown_shapes_are_protocol_errors_that_never_quote_the_token(answer: object) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_response(line(answer))
    assert JWT not in str(info.value) and "c2ln" not in str(info.value)


def test_garbage_is_described_not_quoted() -> None:
    with pytest.raises(ProtocolError, match="a line of 9 characters"):
        parse_response(b"s3cret-tk\n")


@pytest.mark.parametrize(
    "operation,fields",
    [
        (Read(), {}),
        (Publish("hello", "0.2.0", "ab" * 32), {"name": "hello", "vers": "0.2.0", "cksum": "ab" * 32}),
        (Yank("hello", "0.1.0"), {"name": "hello", "vers": "0.1.0"}),
        (Unyank("hello", "0.1.0"), {"name": "hello", "vers": "0.1.0"}),
        (Owners("hello"), {"name": "hello"}),
    ],
    ids=lambda value: getattr(value, "kind", None),
)
def test_request_carries_the_action_flattened_for_cargo_and_nested_for_vouch(operation: Operation, fields: dict) -> None:
    request = CredentialRequest(RegistryInfo("sparse+https://cargo.corp.example/index/", "corp"), operation)
    sent = json.loads(request.to_line())
    action = {"kind": "get", "operation": operation.kind, **fields}
    assert sent["action"] == action  # what Vouch's provider parses
    assert {k: sent[k] for k in action} == action  # what Cargo's cargo-credential parses
    assert sent["v"] == 1 and sent["args"] == []
    assert sent["registry"] == {"index-url": "sparse+https://cargo.corp.example/index/", "name": "corp"}
    assert request.to_line().endswith(b"}\n") and request.to_line().count(b"\n") == 1
