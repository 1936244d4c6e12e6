"""hypermedia.Rewrites: the rewritten body a client of the node's address reads, held so a
list page's ~7,000 URLs are not rewritten on every hit, and never another body's."""

from __future__ import annotations

import json

from p2pcache.hypermedia import MIN_BODY, Rewrites
from p2pcache.policy import rewrite_hypermedia

UP = "https://api.github.com"
LOCAL = "http://127.0.0.1:9000"


def page(n: int, marker: str = "a") -> bytes:
    items = [{"id": i, "url": f"{UP}/repos/o/r/pulls/{i}", "title": marker,
              "html_url": f"https://github.com/o/r/pull/{i}",
              "body": f"see {UP}/repos/o/r/pulls/{i} (text: kept)"} for i in range(n)]
    return json.dumps(items).encode()


def test_a_held_rewrite_is_the_rewrite_and_is_given_again():
    rewrites = Rewrites(UP)
    body = page(300)
    assert len(body) > MIN_BODY
    first = rewrites.body(body, LOCAL)
    assert first == rewrite_hypermedia(body, UP, LOCAL)
    assert f'"url": "{LOCAL}/repos/o/r/pulls/1"'.encode() in first
    assert f"see {UP}/repos/o/r/pulls/1".encode() in first, "text stays GitHub's"
    assert rewrites.body(bytes(bytearray(body)), LOCAL) is first, "held: an equal body"
    other_base = rewrites.body(body, "http://localhost:9000")
    assert b"http://localhost:9000/repos" in other_base and LOCAL.encode() not in other_base


def test_a_body_that_looks_alike_gets_its_own_rewrite_never_the_held_one():
    """A hostile peer or upstream can send a body of the same length, head and tail as a
    held one: compared whole, it is rewritten for itself."""
    rewrites = Rewrites(UP)
    body = page(300, "a")
    twin = page(300, "b")  # the same length; the titles differ in the middle
    assert len(twin) == len(body) and twin[:64] == body[:64] and twin[-64:] == body[-64:]
    rewrites.body(body, LOCAL)
    out = rewrites.body(twin, LOCAL)
    assert out == rewrite_hypermedia(twin, UP, LOCAL) and out != rewrite_hypermedia(body, UP,
                                                                                    LOCAL)
    assert rewrites.body(body, LOCAL) == rewrite_hypermedia(body, UP, LOCAL)


def test_what_is_held_stays_within_its_bytes():
    rewrites = Rewrites(UP, max_bytes=1_000_000)
    bodies = [page(300, str(i)) for i in range(40)]
    rewrites.prepare(bodies, LOCAL)
    assert rewrites._bytes <= 1_000_000
    assert len(rewrites._held) < len(bodies)
    for body in bodies:  # evicted or not, always the right answer
        assert rewrites.body(body, LOCAL) == rewrite_hypermedia(body, UP, LOCAL)
    # small bodies and bodies with no URL of GitHub's are not held
    rewrites = Rewrites(UP)
    rewrites.body(page(2), LOCAL)
    rewrites.body(b'{"x": "' + b"y" * MIN_BODY + b'"}', LOCAL)
    assert rewrites._bytes == 0
