"""Which requests get a registry's token: the security boundary of the product."""

import pytest

from cargo_vouch.config import RegistryConfig, is_plain_path
from cargo_vouch.protocol import Owners, Read, Unyank, Yank
from cargo_vouch.proxy.routing import PublishUpload, RequestOperation, Router, Unrecognised, classify_operation


def router(index: str, prefixes: tuple[str, ...] = ()) -> Router:
    return Router([RegistryConfig(name="corp", index=index, prefixes=prefixes)])


SPARSE = "sparse+https://cargo.corp.example/index/"
GIT = "https://git.corp.example/cargo/index.git"


@pytest.mark.parametrize(
    "scheme,host,port,path,expected",
    [
        ("https", "cargo.corp.example", 443, "/index/config.json", True),
        ("https", "CARGO.corp.example", 443, "/index/3/s/serde", True),
        ("http", "cargo.corp.example", 80, "/index/config.json", False),  # never over plain HTTP
        ("https", "cargo.corp.example", 8443, "/index/config.json", False),  # other port
        ("https", "evil.example", 443, "/index/config.json", False),
        ("https", "cargo.corp.example.evil.example", 443, "/index/x", False),
        ("https", "cargo.corp.example", 443, "/indexes/x", False),  # not under the directory
        ("https", "cargo.corp.example", 443, "/other", False),
        ("https", "cargo.corp.example", 443, "/index/../admin", False),
        ("https", "cargo.corp.example", 443, "/index/%2e%2e/admin", False),
        ("https", "cargo.corp.example", 443, "/index/a%2fb", False),
    ],
)
def test_sparse_index_prefix(scheme, host, port, path, expected):
    assert (router(SPARSE).match(scheme, host, port, path, "GET") is not None) is expected


@pytest.mark.parametrize(
    "path,expected",
    [
        ("/cargo/index.git/info/refs?service=git-upload-pack", True),
        ("/cargo/index.git/git-upload-pack", True),
        ("/cargo/index.git", True),
        ("/cargo/index.gitx/info/refs", False),
        ("/cargo/other.git/info/refs", False),
    ],
)
def test_git_index_prefix_covers_smart_http(path, expected):
    assert (router(GIT).match("https", "git.corp.example", 443, path, "GET") is not None) is expected


def test_dl_and_api_learned_from_config_json():
    r = router(GIT, prefixes=("https://cargo.corp.example/",))
    assert r.match("https", "cargo.corp.example", 443, "/dl/serde/1.0.0/download", "GET") is not None  # the prefix
    r = router(GIT)
    assert r.match("https", "git.corp.example", 443, "/dl/serde/1.0.0/download", "GET") is None
    problems = r.registries[0].learn({"dl": "https://git.corp.example/dl", "api": "https://git.corp.example/web"})
    assert problems == []
    dl = r.match("https", "git.corp.example", 443, "/dl/serde/1.0.0/download", "GET")
    assert dl is not None and dl.operation == Read()
    publish = r.match("https", "git.corp.example", 443, "/web/api/v1/crates/new", "PUT")
    assert publish is not None and publish.operation == PublishUpload()
    assert r.match("https", "git.corp.example", 443, "/webhooks", "GET") is None


@pytest.mark.parametrize(
    "dl,prefix",
    [
        ("https://git.corp.example/dl", "https://git.corp.example:443/dl/"),  # Cargo appends /{crate}/{version}/download
        ("https://git.corp.example/dl/{crate}/{version}/download", "https://git.corp.example:443/dl/"),
        ("https://git.corp.example/dl/{prefix}/{crate}-{version}.crate", "https://git.corp.example:443/dl/"),
        ("https://git.corp.example/files/{lowerprefix}/{crate}/{sha256-checksum}", "https://git.corp.example:443/files/"),
        ("https://git.corp.example/dlq/download?crate={crate}&version={version}", "https://git.corp.example:443/dlq/"),
        ("https://git.corp.example/dl/crates-{crate}", "https://git.corp.example:443/dl/"),
        ("https://git.corp.example:443/api/v1/crates", "https://git.corp.example:443/api/v1/crates/"),  # Kellnr writes :443
    ],
)
def test_the_learned_prefix_is_the_literal_path_up_to_the_last_slash_before_a_marker(dl: str, prefix: str) -> None:
    r = router(GIT)
    assert r.registries[0].learn({"dl": dl}) == []
    assert str(r.registries[0].dl) == prefix


@pytest.mark.parametrize(
    "dl,problem",
    [
        ("https://git.corp.example:4{crate}/x", "holds a marker before its path begins"),
        ("https://git.corp.example/{crate}/{version}", "would cover every path of its host"),
        ("https://git.corp.example/crates-{crate}", "would cover every path of its host"),
        ("https://git.corp.example", "would cover every path of its host"),
        ("https://git.corp.example/download?c={crate}", "would cover every path of its host"),
        ("http://git.corp.example/dl", "is not an https URL"),
        ("https://user:pw@git.corp.example/dl", "carries credentials in the URL"),
        ("https://git.corp.example/a/../dl", "has dot segments"),
        ("https://git.corp.example/;/", "has ;params or an empty segment"),
        ("https://git.corp.example/dl;x/", "has ;params or an empty segment"),
        ("https://git.corp.example//dl/", "has ;params or an empty segment"),
        ("https://evil.test/dl", "is on evil.test, which is not configured"),
        ("https://git.corp.example:8443/dl", "is on git.corp.example, which is not configured"),
    ],
)
def test_a_learned_prefix_never_covers_a_root_nor_an_unconfigured_host(dl: str, problem: str) -> None:
    r = router(GIT)
    problems = r.registries[0].learn({"dl": dl})
    assert len(problems) == 1 and problem in problems[0] and "it gets no token" in problems[0]
    assert r.registries[0].dl is None
    assert not r.intercepts("evil.test", 443)


def test_a_learned_prefix_never_covers_another_registry_s_index() -> None:
    r = Router([
        RegistryConfig(name="corp", index="sparse+https://cargo.corp.example/corp/index/"),
        RegistryConfig(name="team", index="sparse+https://cargo.corp.example/team/index/"),
    ])
    corp = r.registries[0]
    problems = corp.learn({"dl": "https://cargo.corp.example/team/"})
    assert problems and "overlaps another registry's index" in problems[0]
    inside = corp.learn({"dl": "https://cargo.corp.example/team/index/info/"})  # inside it, too
    assert inside and "overlaps another registry's index" in inside[0]
    assert r.match("https", "cargo.corp.example", 443, "/team/index/config.json", "GET").registry.name == "team"


def test_a_learned_dl_on_an_unconfigured_host_is_neither_opened_nor_matched() -> None:
    r = router(SPARSE)
    problems = r.registries[0].learn({"dl": "https://evil.test/dl"})
    assert 'add "https://evil.test:443/" to prefixes in [registries.corp]' in problems[0]
    assert not r.intercepts("evil.test", 443)
    assert r.match("https", "evil.test", 443, "/dl/x/1/download", "GET") is None


def test_extra_prefixes():
    r = router(SPARSE, prefixes=("https://mirror.corp.example/crates/",))
    assert r.match("https", "mirror.corp.example", 443, "/crates/a", "GET")
    assert r.match("https", "mirror.corp.example", 443, "/secret", "GET") is None


@pytest.mark.parametrize(
    "path,method,operation",
    [
        ("/api/v1/crates/new", "PUT", PublishUpload()),
        ("/api/v1/crates/foo/1.0.0/yank", "DELETE", Yank("foo", "1.0.0")),
        ("/web/api/v1/crates/foo/1.0.0/unyank", "PUT", Unyank("foo", "1.0.0")),
        ("/api/v1/crates/foo/owners", "GET", Owners("foo")),
        ("/api/v1/crates/foo/owners", "PUT", Owners("foo")),
        ("/api/v1/crates?q=foo", "GET", Read()),
        ("/api/v1/crates", "GET", Read()),
    ],
)
def test_operations_name_their_crate(path: str, method: str, operation: RequestOperation) -> None:
    assert classify_operation(path.split("?")[0], method) == operation


@pytest.mark.parametrize("learned", [False, True])
def test_writes_are_recognised_when_index_and_api_share_the_root(learned):
    """A common single-origin layout: index at the host root, api = the host."""
    r = router("sparse+https://cargo.corp.example/")
    if learned:
        assert r.registries[0].learn({"api": "https://cargo.corp.example"}) != []  # the root: never adopted
    publish = r.match("https", "cargo.corp.example", 443, "/api/v1/crates/new", "PUT")
    assert publish is not None and publish.operation == PublishUpload()
    index = r.match("https", "cargo.corp.example", 443, "/config.json", "GET")
    assert index is not None and index.is_index and index.operation == Read()


def test_plain_paths():
    assert is_plain_path("/index/3/s/serde")
    assert not is_plain_path("/index/./x")
    assert not is_plain_path("/index/%2E%2E/x")
    assert not is_plain_path("/index\\..\\x")


@pytest.mark.parametrize(
    "path,method,operation",
    [
        ("/api/v1/crates/ne%77", "PUT", PublishUpload()),
        ("/api/v1/crates/new;x", "PUT", PublishUpload()),
        ("/api/v1/%63rates/new", "PUT", PublishUpload()),
        ("/API/v1/crates/new", "PUT", PublishUpload()),
        ("/api/v1/crates/foo/1.0.0/yan%6b", "DELETE", Yank("foo", "1.0.0")),
        ("/api/v1/crates/foo/1.0.0/yank", "POST", Unrecognised()),
        ("/git/index.git/git-receive-pack", "POST", Unrecognised()),
        ("/index/config.json", "PUT", Unrecognised()),
        ("/dl/foo/1.0.0/download", "DELETE", Unrecognised()),
        ("/git/index.git/git-upload-pack", "POST", Read()),
        ("/dl/foo/1.0.0/download", "HEAD", Read()),
    ],
)
def test_no_spelling_of_a_write_passes_as_a_read(path: str, method: str, operation: RequestOperation) -> None:
    """What a server may decode (escapes, ;params, case) is classified as the server reads it,
    and a changing method that is none of Cargo's writes is its own, always refused, kind."""
    assert classify_operation(path, method) == operation


def test_follow_ups_are_bounded_in_time_and_count() -> None:
    from cargo_vouch.proxy.routing import FollowUps

    now = [0.0]
    follow_ups = FollowUps(clock=lambda: now[0])
    registry = router(SPARSE).registries[0]
    follow_ups.remember(registry, "cargo.corp.example", 443, "/a")
    now[0] += FollowUps.TTL_SECONDS + 1
    assert follow_ups.take("cargo.corp.example", 443, "/a") is None  # too late
    for n in range(FollowUps.MAX + 10):
        follow_ups.remember(registry, "cargo.corp.example", 443, f"/p{n}")
    assert len(follow_ups) == FollowUps.MAX
    assert follow_ups.take("cargo.corp.example", 443, "/p0") is None  # the oldest went first
    assert follow_ups.take("CARGO.corp.example", 443, f"/p{FollowUps.MAX + 9}") is registry


@pytest.mark.parametrize(
    "index,path,fetch",
    [
        (GIT, "/cargo/index.git/git-upload-pack", True),
        (SPARSE, "/index/git-upload-pack", False),
        (GIT, "/dl/x/git-upload-pack", False),  # a learned dl is not the git index
    ],
)
def test_git_s_fetch_post_is_a_read_only_on_a_git_index(index: str, path: str, fetch: bool) -> None:
    r = router(index, prefixes=("https://git.corp.example/dl/",) if index == GIT else ())
    host = "git.corp.example" if index == GIT else "cargo.corp.example"
    route = r.match("https", host, 443, path, "POST")
    assert route is not None
    assert (route.operation == Read()) is fetch


def test_a_path_is_matched_as_it_goes_on_the_wire() -> None:
    """`/%77eb/` is not under `/web/` as sent: a front end routing on the raw path would
    pass it elsewhere. (Hygiene refuses such a needless escape before routing.)"""
    r = router(SPARSE)
    r.registries[0].learn({"api": "https://cargo.corp.example/web"})
    assert r.match("https", "cargo.corp.example", 443, "/%77eb/api/v1/crates/hello/0.1.0/yank", "DELETE") is None
    route = r.match("https", "cargo.corp.example", 443, "/web/api/v1/crates/hello/0.1.0/yank", "DELETE")
    assert route is not None and route.operation == Yank("hello", "0.1.0")
