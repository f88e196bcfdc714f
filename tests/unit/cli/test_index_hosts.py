"""What setup and doctor add for a registry's config.json: only prefixes the config can
load, never one over another registry's index."""

from __future__ import annotations

from pathlib import Path

from cargo_vouch.cli.index_hosts import Uncovered, prefix_url, uncovered
from cargo_vouch.config import parse_config
from cargo_vouch.proxy.routing import UrlPrefix


def registries(**indexes: str):  # type: ignore[no-untyped-def]
    config = parse_config({"registries": {name: {"index": index} for name, index in indexes.items()}}, Path("/c.toml"))
    return config.registries


def test_a_prefix_is_written_as_the_config_reads_it() -> None:
    assert prefix_url(UrlPrefix("static.corp.example", 443, "/dl/")) == "https://static.corp.example/dl/"
    assert prefix_url(UrlPrefix("::1", 8443, "/dl/")) == "https://[::1]:8443/dl/"
    assert prefix_url(UrlPrefix("bücher.example", 443, "/dl/")) == "https://xn--bcher-kva.example/dl/"


def test_config_json_hosts_that_cannot_be_added_are_said_not_written() -> None:
    regs = registries(corp="sparse+https://cargo.corp.example/index/", team="sparse+https://team.corp.example/index/")
    found, problems = uncovered(regs["corp"], {"dl": "https://team.corp.example/index/dl", "api": "https://api.corp.example/web"},
                                regs.values())
    assert found == [Uncovered("api", "https://api.corp.example/web", "https://api.corp.example/web/")]
    assert problems == ["config.json dl = 'https://team.corp.example/index/dl' overlaps another registry's index; not added"]


def test_a_host_on_the_configured_origin_needs_nothing() -> None:
    regs = registries(corp="sparse+https://cargo.corp.example/index/")
    assert uncovered(regs["corp"], {"dl": "https://cargo.corp.example/dl/{crate}"}) == ([], [])


def test_a_host_spelled_in_full_width_is_checked_as_it_would_be_written() -> None:
    """`ｔｅａｍ.corp.example` and `team。corp.example` are written `team.corp.example`:
    over team's index, so not added (else corp's token would go to team's index)."""
    regs = registries(corp="sparse+https://cargo.corp.example/index/", team="sparse+https://team.corp.example/index/")
    for dl in ("https://ｔｅａｍ.corp.example/index/", "https://team\u3002corp.example/index/"):
        found, problems = uncovered(regs["corp"], {"dl": dl}, regs.values())
        assert found == [] and problems == [f"config.json dl = {dl!r} overlaps another registry's index; not added"]
