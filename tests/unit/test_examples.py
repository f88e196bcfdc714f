"""The examples work as written: each CI job's Cargo can read the index kind it is given."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from cargo_vouch.cli.cargo_version import reads, version_of
from tests.fixtures.paths import REPO

CI_EXAMPLES = sorted((REPO / "examples" / "ci").glob("*.yml"))


def cargo_version_in(text: str) -> tuple[int, int]:
    """The Cargo a job installs: `rustup toolchain install X` or a `rust:X` image."""
    found = re.search(r"rustup toolchain install (\d+\.\d+)|image: rust:(\d+\.\d+)", text)
    assert found, "the job names no Cargo version"
    version = version_of(found[1] or found[2])
    assert version is not None
    return version


def configs_in(text: str) -> list[dict[str, object]]:
    """The cargo-vouch configs a job writes (heredocs ending in TOML)."""
    blocks = re.findall(r"<<'TOML'\n(.*?)\n\s*TOML", text, re.S)
    assert blocks, "the job writes no cargo-vouch config"
    return [tomllib.loads("\n".join(line.strip() for line in block.splitlines())) for block in blocks]


@pytest.mark.parametrize("example", CI_EXAMPLES, ids=lambda p: p.name)
def test_each_ci_example_gives_its_cargo_an_index_it_can_read(example: Path) -> None:
    text = example.read_text()
    version = cargo_version_in(text)
    for config in configs_in(text):
        for name, registry in config["registries"].items():  # type: ignore[union-attr]
            index = registry["index"]
            assert reads(version, index), f"{example.name}: Cargo {version} cannot read [registries.{name}] {index}"


def test_the_check_itself_tells_old_cargo_from_sparse() -> None:
    assert not reads((1, 65), "sparse+https://cargo.corp.example/index/")
    assert reads((1, 65), "https://git.corp.example/cargo/index.git")
    assert reads((1, 68), "sparse+https://cargo.corp.example/index/")
