"""The injector's one decision, rule by rule: what a registry request's head earns it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cargo_vouch.config import RegistryConfig
from cargo_vouch.protocol import Owners, Read, Unyank, Yank
from cargo_vouch.proxy.policy import Authorize, Divert, Refuse, decide
from cargo_vouch.proxy.routing import Route, Router

SPARSE = RegistryConfig(name="corp", index="sparse+https://cargo.corp.example/index/", max_publish_size=1000)


def route(method: str, path: str, **config: object) -> Route:
    router = Router([replace(SPARSE, **config)])  # type: ignore[arg-type]
    router.registries[0].learn({"api": "https://cargo.corp.example/web"})
    found = router.match("https", "cargo.corp.example", 443, path, method)
    assert found is not None
    return found


def test_reads_are_authorized_without_a_touch() -> None:
    assert decide(route("GET", "/index/3/f/foo"), "GET", "/index/3/f/foo") == Authorize(Read())
    assert decide(route("GET", "/index/3/f/foo", touch=True, allow_publish=True), "GET", "/index/3/f/foo") == Authorize(Read())


def test_the_sparse_config_json_is_marked_to_be_read_and_rewritten() -> None:
    assert decide(route("GET", "/index/config.json"), "GET", "/index/config.json") == Authorize(Read(), config_json=True)


def test_a_request_cargo_never_makes_is_refused_whatever_the_config() -> None:
    verdict = decide(route("POST", "/web/api/v1/crates/foo/1.0.0/yank", allow_publish=True), "POST", "/web/…/yank")
    assert isinstance(verdict, Refuse) and verdict.status == 403
    assert "is not a request Cargo makes" in verdict.message


@pytest.mark.parametrize(
    "method,path",
    [("PUT", "/web/api/v1/crates/new"), ("DELETE", "/web/api/v1/crates/foo/1.0.0/yank"),
     ("PUT", "/web/api/v1/crates/foo/owners"), ("GET", "/web/api/v1/crates/foo/owners")],
)
def test_writes_are_refused_unless_allow_publish(method: str, path: str) -> None:
    verdict = decide(route(method, path), method, path)
    assert isinstance(verdict, Refuse) and "set allow-publish = true in [registries.corp]" in verdict.message


def test_a_publish_goes_to_the_relay_unless_its_length_is_over_the_limit() -> None:
    publish = route("PUT", "/web/api/v1/crates/new", allow_publish=True)
    assert decide(publish, "PUT", "/web/api/v1/crates/new", "1000") == Divert()
    assert decide(publish, "PUT", "/web/api/v1/crates/new", None) == Divert()  # the relay counts the body
    too_large = decide(publish, "PUT", "/web/api/v1/crates/new", "1001")
    assert isinstance(too_large, Refuse) and too_large.status == 413
    assert "larger than max-publish-size (1000 bytes)" in too_large.message


def test_with_touch_yank_and_unyank_need_one_and_owners_changes_go_to_the_relay() -> None:
    config = {"allow_publish": True, "touch": True}
    yank = route("DELETE", "/web/api/v1/crates/foo/1.0.0/yank", **config)
    assert decide(yank, "DELETE", "/x") == Authorize(Yank("foo", "1.0.0"), touch=True)
    unyank = route("PUT", "/web/api/v1/crates/foo/1.0.0/unyank", **config)
    assert decide(unyank, "PUT", "/x") == Authorize(Unyank("foo", "1.0.0"), touch=True)
    assert decide(route("PUT", "/web/api/v1/crates/foo/owners", **config), "PUT", "/x") == Divert()
    assert decide(route("DELETE", "/web/api/v1/crates/foo/owners", **config), "DELETE", "/x") == Divert()
    listing = route("GET", "/web/api/v1/crates/foo/owners", **config)
    assert decide(listing, "GET", "/x") == Authorize(Owners("foo"))  # changes nothing: no touch


def test_without_touch_allowed_writes_are_authorized_directly() -> None:
    yank = route("DELETE", "/web/api/v1/crates/foo/1.0.0/yank", allow_publish=True)
    assert decide(yank, "DELETE", "/x") == Authorize(Yank("foo", "1.0.0"))
    owners = route("PUT", "/web/api/v1/crates/foo/owners", allow_publish=True)
    assert decide(owners, "PUT", "/x") == Authorize(Owners("foo"))
