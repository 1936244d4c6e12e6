"""Unit tests for p2pcache.invalidation: what a write changes, what a peer may ask us to
drop, and when a drop makes an entry or a fill unusable. No I/O."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pcache.invalidation import (
    MAX_PATHS,
    PEER_MESSAGES_BURST,
    PEER_PATHS_BURST,
    Admission,
    Bucket,
    Drop,
    DropRefused,
    Drops,
    Seen,
    for_repositories,
    for_write,
    minimal,
    parse_peer_drop,
    valid_id,
    valid_peer_id,
)
from p2pcache.targets import parse

R = "/repos/o/r"


def drop_of(method: str, target: str, status: int = 200, body: object = None) -> Drop:
    raw = b"" if body is None else json.dumps(body).encode()
    return for_write(method, parse(target), status, raw)


class TestForWrite:
    def test_a_comment_drops_the_issue_its_pull_request_and_their_lists(self):
        d = drop_of("POST", f"{R}/issues/5/comments", 201)
        for stale in (f"{R}/issues/5", f"{R}/issues/5/comments", f"{R}/issues",
                      f"{R}/pulls/5", f"{R}/pulls/5/reviews", f"{R}/issues/comments",
                      f"{R}/issues/5/labels", f"{R}/issues/5/timeline", f"{R}/pulls",
                      f"{R}/issues/events", R):
            assert d.covers(stale), stale
        for kept in (f"{R}/issues/6", f"{R}/pulls/6/files", f"{R}/contents/README.md",
                     f"{R}/commits", "/repos/o/other/issues/5", "/user"):
            assert not d.covers(kept), kept

    def test_what_policy_invalidated_paths_covered_is_still_covered(self):
        from p2pcache.policy import invalidated_paths

        for method, target in (("POST", f"{R}/issues"), ("PATCH", f"{R}/issues/1"),
                               ("PUT", f"{R}/topics"), ("DELETE", f"{R}/hooks/9"),
                               ("POST", "/user/repos"), ("PATCH", "/user")):
            d = drop_of(method, target)
            for path in invalidated_paths(parse(target)):
                assert d.covers(path), (target, path)

    def test_labels_drop_the_repository_labels_too(self):
        d = drop_of("POST", f"{R}/issues/7/labels")
        assert d.covers(f"{R}/labels") and d.covers(f"{R}/labels/bug")
        assert d.covers(f"{R}/pulls/7") and d.covers(f"{R}/issues")

    def test_a_new_issue_drops_the_lists_and_the_repository_counts(self):
        d = drop_of("POST", f"{R}/issues", 201)
        assert d.covers(f"{R}/issues") and d.covers(f"{R}/pulls") and d.covers(R)
        assert not d.covers(f"{R}/issues/5")  # only the lists: the others did not change

    def test_an_edited_comment_drops_the_issue_its_answer_names(self):
        answer = {"id": 9, "issue_url": "https://api.github.com/repos/o/r/issues/12"}
        d = drop_of("PATCH", f"{R}/issues/comments/9", 200, answer)
        assert d.covers(f"{R}/issues/12/comments") and d.covers(f"{R}/pulls/12")
        assert d.covers(f"{R}/issues/comments/9") and d.covers(f"{R}/issues/comments")
        assert not d.covers(f"{R}/issues/13/comments")

    def test_a_deleted_comment_without_an_answer_drops_every_issue(self):
        d = drop_of("DELETE", f"{R}/issues/comments/9", 204)
        assert d.covers(f"{R}/issues/13/comments") and d.covers(f"{R}/pulls/2")
        assert not d.covers(f"{R}/contents/x")

    def test_an_answer_naming_another_repository_is_not_believed(self):
        answer = {"issue_url": "https://api.github.com/repos/evil/x/issues/1"}
        d = drop_of("PATCH", f"{R}/issues/comments/9", 200, answer)
        assert d.covers(f"{R}/issues/13/comments")  # the conservative fallback

    @pytest.mark.parametrize("target", [f"{R}/pulls/3/merge", f"{R}/contents/a/b.md",
                                        f"{R}/git/refs/heads/main", f"{R}/merges",
                                        f"{R}/branches/main/rename", R])
    def test_writes_that_move_code_drop_the_whole_repository(self, target):
        d = drop_of("PUT", target)
        assert d.trees == (R,)
        assert d.covers(f"{R}/contents/README.md") and d.covers(f"{R}/commits")

    def test_a_release_drops_tags_and_refs(self):
        d = drop_of("POST", f"{R}/releases", 201)
        assert d.covers(f"{R}/releases/latest") and d.covers(f"{R}/tags")
        assert d.covers(f"{R}/git/refs/tags/v1") and d.covers(R)

    def test_writes_outside_repositories_drop_the_collections_above(self):
        d = drop_of("DELETE", "/user/starred/o/r", 204)
        assert d.covers("/user/starred") and d.covers("/user/starred/o/r/x")
        assert d.covers("/user") and not d.covers("/users/x")

    def test_the_repositories_spelling_follows_the_same_rules(self):
        d = drop_of("POST", "/repositories/42/issues/5/comments", 201)
        assert d.covers("/repositories/42/issues/5") and d.covers("/repositories/42/pulls/5")
        assert d.covers("/repositories/42/issues")

    def test_aliases_add_the_repositories_spelling(self):
        d = drop_of("POST", f"{R}/issues/5/comments", 201).aliased({R: {"42"}})
        assert d.covers("/repositories/42/issues") and d.covers("/repositories/42/pulls/5/x")
        assert d.covers(f"{R}/issues")

    def test_case_does_not_matter(self):
        d = drop_of("POST", "/repos/Octo/Repo/issues/5/comments", 201)
        assert d.covers("/repos/octo/repo/issues/5") and d.covers("/REPOS/OCTO/REPO/issues")

    def test_for_repositories_is_everything_of_them(self):
        d = for_repositories([("o", "r")], [42])
        assert d.covers(R) and d.covers(f"{R}/anything/at/all") and not d.covers("/repos/o/s")
        assert d.covers("/repositories/42/issues") and not d.covers("/repositories/4")
        assert parse_peer_drop(d.as_meta()) == d  # peers take it

    @given(st.lists(st.sampled_from(["repos", "o", "r", "issues", "pulls", "1", "comments",
                                     "labels", "x", "git", "contents"]), min_size=1,
                    max_size=7))
    @settings(max_examples=300, deadline=None)
    def test_a_write_always_covers_its_target_and_never_everything(self, segments):
        target = "/" + "/".join(segments)
        d = for_write("POST", parse(target), 201)
        assert d.covers(target)
        assert not d.covers("/") and not d.covers("/zzz-unrelated")


class TestMinimal:
    def test_nested_trees_and_covered_paths_go(self):
        d = minimal([f"{R}/issues/5", f"{R}/issues", f"{R}/issues"],
                    [f"{R}/issues/5", R + "/issues/5/x", f"{R}/pulls/5"])
        assert d.trees == (f"{R}/issues/5", f"{R}/pulls/5")
        assert d.paths == (f"{R}/issues",)

    def test_chunks_keep_every_path(self):
        d = Drop(tuple(f"{R}/p{i}" for i in range(100)), tuple(f"{R}/t{i}" for i in range(30)))
        parts = d.chunks()
        assert all(len(p) <= MAX_PATHS for p in parts)
        assert sorted(p for c in parts for p in c.paths) == sorted(d.paths)
        assert sorted(t for c in parts for t in c.trees) == sorted(d.trees)


class TestPeerDrop:
    def test_paths_inside_one_repository_are_taken_canonical(self):
        d = parse_peer_drop({"paths": [f"{R}/issues/"], "trees": ["/repositories/42/pulls/5",
                                                                  "/api/v3/repos/a/b"]})
        assert d.paths == (f"{R}/issues",)
        assert d.trees == ("/repositories/42/pulls/5", "/repos/a/b")

    @pytest.mark.parametrize("bad", ["/", "/repos", "/repos/o", "/repos/o/", "/user",
                                     "/users/o/repos", "/repositories", "/repositories/x",
                                     "repos/o/r", "//evil/repos/o/r", "http://evil/repos/o/r",
                                     f"{R}/issues?state=open", "/repos/o/../../user",
                                     "/repos/o/r/\u00e9", "/repos/o/r/" + "x" * 2000, 7, None])
    def test_anything_else_is_refused(self, bad):
        with pytest.raises(DropRefused):
            parse_peer_drop({"trees": [bad]})
        with pytest.raises(DropRefused):
            parse_peer_drop({"paths": [bad]})

    def test_the_shape_is_checked(self):
        for meta in ({}, {"paths": "/repos/o/r"}, {"trees": {"a": 1}}, {"paths": [], "trees": []},
                     {"trees": [f"{R}/x{i}" for i in range(MAX_PATHS + 1)]}):
            with pytest.raises(DropRefused):
                parse_peer_drop(meta)

    def test_ids(self):
        assert valid_id("0123456789abcdef0123456789abcdef")
        assert not valid_id("0123456789ABCDEF0123456789abcdef") and not valid_id("x" * 32)
        assert not valid_id(None) and not valid_id("a" * 33)
        assert valid_peer_id("12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5")
        assert not valid_peer_id("12D3KooW0OIl") and not valid_peer_id("")


class TestDrops:
    def test_an_entry_asked_before_a_covering_drop_is_dropped(self):
        drops = Drops(ttl=60)
        drops.record(Drop((f"{R}/issues",), (f"{R}/issues/5",)), now=100.0)
        assert drops.dropped_since(f"{R}/issues", 99.0)
        assert drops.dropped_since(f"{R}/issues/5/comments", 99.0)
        assert drops.dropped_since(f"{R}/ISSUES/5", 100.0)  # at the same instant: dropped
        assert not drops.dropped_since(f"{R}/issues", 100.5)  # asked after it
        assert not drops.dropped_since(f"{R}/issues/6", 99.0)
        assert not drops.dropped_since(f"{R}/issues/x/y", 99.0)  # exact: nothing below
        assert not drops.dropped_since(f"{R}/pulls/5", 0.0)

    def test_sequence_numbers_move_so_later_requests_take_new_flights(self):
        drops = Drops(ttl=60)
        before = drops.latest(f"{R}/issues").seq
        drops.record(Drop((), (R,)), now=10.0)
        after = drops.latest(f"{R}/issues").seq
        assert after > before
        drops.record(Drop((f"{R}/pulls",), ()), now=11.0)
        assert drops.latest(f"{R}/issues").seq == after  # another path: unchanged

    def test_drops_are_forgotten_after_the_freshness_window_and_the_longest_fill(self):
        drops = Drops(ttl=60)
        drops.record(Drop((f"{R}/a",), ()), now=0.0)
        drops.record(Drop((f"{R}/b",), ()), now=1000.0)  # expires what is older
        assert not drops.dropped_since(f"{R}/a", -1.0)
        assert drops.dropped_since(f"{R}/b", 999.0)
        assert len(drops) == 1

    def test_too_many_records_cover_everything_instead(self):
        drops = Drops(ttl=60, max_records=10)
        for i in range(11):
            drops.record(Drop((f"{R}/p{i}",), ()), now=5.0)
        assert len(drops) == 0
        assert drops.dropped_since("/users/anyone", 4.0) and drops.dropped_since(f"{R}/z", 5.0)
        assert not drops.dropped_since(f"{R}/z", 6.0)

    def test_everything(self):
        drops = Drops(ttl=60)
        drops.everything(now=50.0)
        assert drops.dropped_since("/anything", 49.0) and not drops.dropped_since("/x", 51.0)

    def test_everything_before_a_moment_keeps_the_drops_after_it(self):
        drops = Drops(ttl=60)
        drops.record(Drop((f"{R}/late",), ()), now=20.0)
        before = drops.latest(f"{R}/late").seq
        drops.everything(now=10.0)  # what was held before we began dialling, say
        assert drops.dropped_since(f"{R}/late", 15.0), "the later drop still counts"
        assert drops.dropped_since(f"{R}/other", 9.0) and not drops.dropped_since(f"{R}/x", 11.0)
        assert drops.latest(f"{R}/other").seq > before  # new flights for everything

    def test_a_snapshot_does_not_change_with_the_original(self):
        drops = Drops(ttl=60)
        copy = drops.snapshot()
        drops.record(Drop((f"{R}/a",), ()), now=1.0)
        assert not copy.dropped_since(f"{R}/a", 0.0) and drops.dropped_since(f"{R}/a", 0.0)


class TestBounds:
    def test_bucket(self):
        bucket = Bucket(rate=2, burst=4)
        assert [bucket.take(0.0) for _ in range(5)] == [True] * 4 + [False]
        assert bucket.take(0.5) and not bucket.take(0.5)
        assert not bucket.take(10.0, amount=5)  # never more than the burst

    def test_one_peer_is_bounded_and_others_are_not_starved_by_it(self):
        admission = Admission()
        taken = sum(admission.admit("evil", 1, now=0.0) is None for _ in range(10_000))
        assert taken == PEER_MESSAGES_BURST
        assert admission.admit("good", 10, now=0.0) is None

    def test_paths_are_bounded_per_peer(self):
        admission = Admission()
        taken = sum(admission.admit("evil", MAX_PATHS, now=0.0) is None for _ in range(100))
        assert taken * MAX_PATHS <= PEER_PATHS_BURST
        assert admission.admit("evil", MAX_PATHS, now=1.0) is None  # refilled

    def test_all_peers_together_are_bounded(self):
        admission = Admission()
        taken = sum(admission.admit(f"p{i}", MAX_PATHS, now=0.0) is None for i in range(1000))
        assert 0 < taken * MAX_PATHS <= 4000

    def test_seen(self):
        seen = Seen(size=3, keep_for=10)
        assert seen.first("a", 0) and not seen.first("a", 1)
        assert seen.first("b", 1) and seen.first("c", 1) and seen.first("d", 1)
        assert seen.first("a", 2)  # pushed out by size
        assert seen.first("b", 100)  # forgotten after keep_for


def test_every_drop_in_a_repository_drops_its_graphql_answers():
    from p2pcache.invalidation import with_graphql

    comment = with_graphql(for_write("POST", parse("/repos/o/r/issues/7/comments"), 201, b""))
    assert comment.covers("/repos/o/r/graphql") and comment.covers("/repos/O/R/graphql")
    assert not comment.covers("/repos/o/other/graphql")
    webhook = with_graphql(Drop(("/repos/o/r/pulls",), ("/repos/p/q/releases",)))
    assert webhook.covers("/repos/o/r/graphql") and webhook.covers("/repos/p/q/graphql")
    outside = Drop((), ("/user/starred",))
    assert with_graphql(outside) == outside  # nothing of a repository: nothing more
