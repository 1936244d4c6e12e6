"""Unit tests for p2pcache.targets: the one parse of a request-target, and the proof that
the URL built from it stays on the upstream's host."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pcache.targets import Base, Target, TargetError, parse

BASES = ["https://api.github.com", "http://127.0.0.1:6000", "https://ghe.example/api/v3",
         "http://[::1]:8080"]


@pytest.mark.parametrize("raw", [
    "1/stolen", "@evil:80/x", "//evil/x", "http://evil/x", "https://api.github.com/x",
    ".evil.example/repos/o/r", "*", "evil:443", "", "/a#b", "/a b", "/a\\b", "/caf\u00e9",
    "/x?%zz", "/x?a=%4", "/x?a#b",
])
def test_refused(raw):
    with pytest.raises(TargetError):
        parse(raw)


@pytest.mark.parametrize("raw,path,query", [
    ("/repos/o/r", "/repos/o/r", ""),
    ("/repos/o/r?b=2&a=1", "/repos/o/r", "a=1&b=2"),
    ("/repos/o/r?", "/repos/o/r", ""),
    ("/r?x=", "/r", "x="),
    ("/search?q=a%26b", "/search", "q=a%26b"),
    ("/repos/a/../b", "/repos/b", ""),
    ("/repos/a/%2e%2E/b", "/repos/b", ""),
    ("/../../etc", "/etc", ""),
    ("/a/./b/.", "/a/b/", ""),
    ("/a//b", "/a/b", ""),
    ("/api/v3/repos/o/r", "/repos/o/r", ""),
    ("/api/v3", "/", ""),
    ("/api/v30/x", "/api/v30/x", ""),
    ("/repos/o/r/branches/feature%2Fx", "/repos/o/r/branches/feature%2Fx", ""),
    ("/search/issues?q=repo:o/r+is:open&labels[]=a", "/search/issues",
     "labels%5B%5D=a&q=repo%3Ao%2Fr+is%3Aopen"),
])
def test_canonical(raw, path, query):
    target = parse(raw)
    assert (target.path, target.query) == (path, query)
    assert parse(str(target)) == target  # canonical is a fixed point


def test_enterprise_prefix_is_remembered_but_not_part_of_the_resource():
    assert parse("/api/v3/users/u").prefix == "/api/v3"
    assert parse("/api/v3/users/u") == parse("/users/u")
    assert str(parse("/api/v3/users/u")) == "/users/u"


def test_bytes_must_be_ascii():
    assert parse(b"/repos/o/r") == Target("/repos/o/r")
    with pytest.raises(TargetError, match="ASCII"):
        parse("/caf\u00e9".encode())


def test_long_targets_are_refused():
    with pytest.raises(TargetError):
        parse("/" + "a" * 9000)


@pytest.mark.parametrize("base", BASES)
def test_upstream_url_keeps_the_base(base):
    b = Base.parse(base)
    url = b.url(parse("/@evil.example:1/x?next=//evil"))
    parts = urlsplit(url)
    assert parts.netloc == urlsplit(base).netloc and parts.scheme == urlsplit(base).scheme
    assert parts.path.startswith(urlsplit(base).path + "/@evil.example:1/x")


def test_base_authorities():
    assert Base.parse("https://api.github.com").authorities == {"api.github.com",
                                                                "api.github.com:443"}
    assert Base.parse("http://127.0.0.1:6000").authorities == {"127.0.0.1:6000"}


@pytest.mark.parametrize("bad", ["ftp://x", "http://", "http://[::1", "http://h:99999",
                                 "https://u:p@h", "https://h/?q"])
def test_bad_bases(bad):
    with pytest.raises(ValueError):
        Base.parse(bad)


@settings(max_examples=1000, deadline=None, derandomize=True)
@given(raw=st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x7f), max_size=60)
       | st.text(alphabet="/.%2eE@:?&=#\\ab", max_size=40),
       base=st.sampled_from(BASES))
def test_any_accepted_target_stays_on_the_upstream_host(raw, base):
    try:
        target = parse(raw)
    except TargetError:
        return
    assert target.path.startswith("/") and not target.path.startswith("//")
    assert "/../" not in target.path + "/" and "/./" not in target.path + "/"
    url = Base.parse(base).url(target)
    parts, expected = urlsplit(url), urlsplit(base)
    assert (parts.scheme, parts.netloc) == (expected.scheme, expected.netloc)
    assert parse(str(target)) == target


@pytest.mark.parametrize("base, url", [
    ("https://api.github.com", "https://api.github.com/graphql"),
    ("https://ghe.example/api/v3", "https://ghe.example/api/graphql"),
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080/graphql"),
])
def test_graphql_goes_to_the_upstreams_graphql_endpoint(base, url):
    assert Base.parse(base).graphql_url() == url
