"""client.next_target: a next-page link is followed only if it names an API path on the node
(issue 21, finding 6), for `p2pcache api --paginate` and the MCP tools alike."""

from __future__ import annotations

import pytest

from p2pcache.client import LinkError, next_target

NODE = "http://127.0.0.1:9180"


@pytest.mark.parametrize("link, target", [
    ('<http://127.0.0.1:9180/repos/o/r/issues?page=2>; rel="next", '
     '<http://127.0.0.1:9180/repos/o/r/issues?page=9>; rel="last"', "/repos/o/r/issues?page=2"),
    ('<http://127.0.0.1:9180/x?page=9>; rel="last", <http://127.0.0.1:9180/x?page=2>; rel="next"',
     "/x?page=2"),
    ("</repos/o/r?page=2>; rel=next", "/repos/o/r?page=2"),
    ('<HTTP://127.0.0.1:9180/a/../b?page=2#top>; rel="prev next"', "/b?page=2"),
    ('<http://127.0.0.1:9180/api/v3/x?page=2>; rel="next"', "/x?page=2"),
    ('<http://127.0.0.1:9180/x?page=2>; rel="last"', None),
    ("", None),
])
def test_links_on_the_node_are_followed(link, target):
    assert next_target(link, NODE) == target


@pytest.mark.parametrize("url", [
    "@127.0.0.9:8999/x?page=2", "//127.0.0.9:8999/x", "http://127.0.0.9:8999/x",
    "http://127.0.0.1:9180@127.0.0.9:8999/x", "http://user:pw@127.0.0.1:9180/x",
    "https://127.0.0.1:9180/x", "http://127.0.0.1:9181/x", "http://127.0.0.1/x",
    "http://localhost:9180/x", "1/x", "x?page=2", "javascript:alert(1)", "/\\evil/x",
    "/x y", "/répos", "/-/stats", "/-", "http://127.0.0.1:9180/-/peers", "/" + "a" * 9000,
    "http://127.0.0.1:9180\t@127.0.0.9/x", "",
])
def test_links_anywhere_else_are_refused(url):
    with pytest.raises(LinkError, match="is not a path on http://127.0.0.1:9180"):
        next_target(f'<{url}>; rel="next"', NODE)


def test_a_node_base_with_a_path_keeps_links_under_it():
    base = "http://127.0.0.1:9180/api/v3"
    assert next_target('<http://127.0.0.1:9180/api/v3/x?page=2>; rel="next"', base) == \
        "/x?page=2"
    with pytest.raises(LinkError):
        next_target('<http://127.0.0.1:9180/elsewhere/x>; rel="next"', base)
