"""Unit tests for p2pcache.store.Store against a real SQLite file."""

from __future__ import annotations

import os
import random
import sqlite3

import pytest

from p2pcache.models import Entry
from p2pcache.store import Store, StoreError


def mk(key: str, path: str = "/repos/o/r", body: bytes = b"{}",
       headers: dict[str, str] | None = None, fetched_at: float = 1000.0,
       vouched: float | None = None, asked_at: float = 999.0) -> Entry:
    return Entry(key, path, 200, {"etag": '"e"'} if headers is None else headers, body,
                 fetched_at, vouched=vouched, asked_at=asked_at)


def truth(store: Store) -> tuple[int, int]:
    return tuple(store._db.execute("SELECT COALESCE(SUM(size), 0), COUNT(*) FROM entries")
                 .fetchone())


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "cache.db")
    yield s
    try:
        s.close()
    except sqlite3.ProgrammingError:
        pass


def test_put_get_round_trip(store):
    headers = {"content-type": "application/octet-stream", "etag": 'W/"abc"',
               "link": '<https://x/?page=2>; rel="next"', "x-unicode": "ü✓"}
    body = bytes(range(256)) * 3
    e = Entry("GET /r accept=a", "/r", 200, headers, body, 1234.5)
    store.put(e, now=1.0)
    got = store.get("GET /r accept=a", now=2.0)
    # A field that is not valid HTTP (an older node may have stored one) is dropped on read.
    valid = {k: v for k, v in headers.items() if k != "x-unicode"}
    # Asked for "now" unless the entry says when (the cache always does).
    assert got == Entry(e.key, e.path, e.status, valid, e.body, e.fetched_at, asked_at=1.0)
    assert isinstance(got.body, bytes)
    assert got.headers == valid
    assert store.count == 1
    assert store.bytes == e.size == len(body) + sum(len(k) + len(v) for k, v in headers.items())


def test_missing_key(store):
    assert store.get("nope") is None
    assert (store.bytes, store.count) == (0, 0)


def test_replace_same_key_updates_counters(store):
    store.put(mk("k", body=b"a" * 100), now=1)
    store.put(mk("k", body=b"b" * 40, fetched_at=2000.0), now=2)
    assert store.count == 1
    assert store.bytes == mk("k", body=b"b" * 40).size
    assert store.get("k").body == b"b" * 40
    assert store.get("k").fetched_at == 2000.0
    assert (store.bytes, store.count) == truth(store)


def test_survives_close_and_reopen(tmp_path):
    path = tmp_path / "cache.db"
    s = Store(path)
    entries = [mk(f"k{i}", f"/p/{i}", bytes([i]) * (10 + i)) for i in range(5)]
    for e in entries:
        s.put(e)
    total = s.bytes
    s.close()
    s2 = Store(path)
    try:
        assert s2.count == 5
        assert s2.bytes == total == sum(e.size for e in entries)
        for e in entries:
            assert s2.get(e.key) == e
    finally:
        s2.close()


def test_journal_mode_is_wal(store, tmp_path):
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.put(mk("k"))
    other = sqlite3.connect(tmp_path / "cache.db")
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert other.execute("SELECT key FROM entries").fetchall() == [("k",)]
    finally:
        other.close()


# -- byte bound ---------------------------------------------------------------------------

def test_lru_eviction_follows_access_order(tmp_path):
    size = mk("a", body=b"x" * 1000).size
    s = Store(tmp_path / "c.db", max_bytes=3 * size)
    try:  # (minutes apart: recency is written back at most once a minute, TOUCH_EVERY)
        s.put(mk("a", body=b"x" * 1000), now=100)
        s.put(mk("b", body=b"x" * 1000), now=200)
        s.put(mk("c", body=b"x" * 1000), now=300)
        assert s.count == 3 and s.bytes == 3 * size
        assert s.get("a", now=400) is not None  # a is now the most recently used
        s.put(mk("d", body=b"x" * 1000), now=500)
        assert s.get("b", now=600) is None  # the least recently used went
        assert [k for k in "acd" if s.get(k, now=700) is not None] == ["a", "c", "d"]
        assert (s.bytes, s.count) == (3 * size, 3) == truth(s)
        # touch c, then a big entry needing two slots evicts d and a, keeps c
        s.get("c", now=1000)
        s.put(mk("big", body=b"y" * (2 * 1000 + len("etag") + len('"e"'))), now=1100)
        assert s.get("c", now=1200) is not None
        assert s.get("d", now=1200) is None and s.get("a", now=1200) is None
        assert (s.bytes, s.count) == truth(s)
        assert s.bytes <= s.max_bytes
    finally:
        s.close()


def test_a_hit_within_a_minute_of_the_last_write_rewrites_nothing(tmp_path):
    """SQLite rewrites a whole row (its 700 KB body too) to change its recency: an entry
    written or touched within TOUCH_EVERY is not touched again, so a job's hits on what
    its warm start just stored cost no writes."""
    from p2pcache.store import TOUCH_EVERY

    s = Store(tmp_path / "c.db")
    try:
        s.put(mk("page", body=b"p" * 700_000), now=1000)
        s.flush_touches()
        changes = s._db.total_changes
        for t in range(10):
            assert s.get("page", now=1000 + t) is not None
        s.flush_touches()
        assert s._db.total_changes == changes, "no row rewritten"
        s.get("page", now=1000 + TOUCH_EVERY + 1)
        s.flush_touches()
        assert s._db.total_changes == changes + 1, "a minute later: recency written once"
        s.get("page", now=999)  # a clock that went back: written, never skipped for good
        s.flush_touches()
        assert s._db.total_changes == changes + 2
    finally:
        s.close()


def test_eviction_evicts_several_until_it_fits(tmp_path):
    s = Store(tmp_path / "c.db", max_bytes=10_000)
    try:
        for i in range(100):
            s.put(mk(f"k{i:03d}", body=b"z" * 93), now=i)  # 100 bytes each with headers
        assert s.bytes <= 10_000
        assert (s.bytes, s.count) == truth(s) == (10_000, 100)
        s.put(mk("large", body=b"q" * 4993), now=1000)  # 5000 bytes: needs 50 slots
        assert (s.bytes, s.count) == truth(s)
        assert s.bytes <= 10_000
        assert s.count == 51
        assert s.get("k049", now=1001) is None
        assert s.get("k050", now=1001) is not None
        assert s.get("large", now=1001) is not None
    finally:
        s.close()


def test_entry_bigger_than_the_bound_is_not_stored(tmp_path):
    s = Store(tmp_path / "c.db", max_bytes=500)
    try:
        s.put(mk("small", body=b"s" * 100), now=1)
        s.put(mk("huge", body=b"h" * 600), now=2)
        assert s.get("huge", now=2) is None
        assert s.get("small", now=2) is not None  # nothing was evicted for it
        assert s.count == 1 and (s.bytes, s.count) == truth(s)
        # exactly at the bound is fine
        e = mk("exact", body=b"e" * (500 - len("etag") - len('"e"')))
        assert e.size == 500
        s.put(e, now=3)
        assert s.get("exact", now=4) is not None
        assert (s.bytes, s.count) == (500, 1) == truth(s)
    finally:
        s.close()


# -- invalidation -------------------------------------------------------------------------

def test_invalidate_path_subpaths_and_query_variants(store):
    store.put(mk("GET /repos/o/r accept=a", "/repos/o/r"))
    store.put(mk("GET /repos/o/r/issues accept=a", "/repos/o/r/issues"))
    store.put(mk("GET /repos/o/r/issues?page=2 accept=a", "/repos/o/r/issues"))
    store.put(mk("GET /repos/o/r/issues/1/comments accept=a", "/repos/o/r/issues/1/comments"))
    store.put(mk("GET /repos/o/r2 accept=a", "/repos/o/r2"))
    store.put(mk("GET /repos/o/r2/issues accept=a", "/repos/o/r2/issues"))
    store.put(mk("GET /repos/o accept=a", "/repos/o"))
    assert store.invalidate(["/repos/o/r"]) == 4
    left = {k for (k,) in store._db.execute("SELECT key FROM entries")}
    assert left == {"GET /repos/o/r2 accept=a", "GET /repos/o/r2/issues accept=a",
                    "GET /repos/o accept=a"}
    assert (store.bytes, store.count) == truth(store) == (3 * mk("x").size, 3)


def test_invalidate_query_variants_only_for_that_path(store):
    store.put(mk("GET /repos/o/r/issues?page=1 accept=a", "/repos/o/r/issues"))
    store.put(mk("GET /repos/o/r/issues?page=2 accept=b", "/repos/o/r/issues"))
    store.put(mk("GET /repos/o/r/issuesX accept=a", "/repos/o/r/issuesX"))
    store.put(mk("GET /repos/o/r/pulls accept=a", "/repos/o/r/pulls"))
    assert store.invalidate(["/repos/o/r/issues"]) == 2
    assert store.get("GET /repos/o/r/issuesX accept=a") is not None
    assert store.get("GET /repos/o/r/pulls accept=a") is not None
    assert store.count == 2


def test_invalidate_several_paths_and_nothing(store):
    store.put(mk("a", "/x/a"))
    store.put(mk("b", "/x/b"))
    assert store.invalidate([]) == 0
    assert store.invalidate(["/nothing"]) == 0
    assert store.invalidate(["/x/a", "/x/b", "/x/a"]) == 2
    assert (store.bytes, store.count) == (0, 0) == truth(store)


def test_invalidate_trailing_slash(store):
    store.put(mk("a", "/repos/o/r/issues"))
    store.put(mk("b", "/repos/o/r/issues/"))
    assert store.invalidate(["/repos/o/r/issues"]) == 2


@pytest.mark.parametrize("wild,victim", [
    ("/repos/o/r_x", "/repos/o/rAx/issues"),
    ("/repos/o/r_x", "/repos/o/rAx"),
    ("/repos/o/%", "/repos/o/r/issues"),
    ("/repos/o/r%", "/repos/o/r2/issues"),
    ("/repos/o\\", "/repos/o/x"),
])
def test_like_wildcards_are_escaped(store, wild, victim):
    store.put(mk("victim", victim))
    store.put(mk("literal", wild + "/sub"))
    assert store.invalidate([wild]) == 1
    assert store.get("victim") is not None
    assert store.get("literal") is None


def test_invalidate_root_removes_everything(store):
    for i, p in enumerate(["/a", "/b/c", "/user"]):
        store.put(mk(f"k{i}", p))
    assert store.invalidate(["/"]) == 3
    assert store.count == 0


# -- failures -----------------------------------------------------------------------------

def test_full_disk_put_raises_and_counters_stay_consistent(store):
    for i in range(5):
        store.put(mk(f"k{i}", f"/p/{i}", bytes([i]) * 1000), now=i)
    before = (store.bytes, store.count)
    assert before == truth(store)
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count={pages}")
    with pytest.raises(StoreError, match="could not store 'big'"):
        store.put(mk("big", "/big", os.urandom(50_000)), now=10)
    assert (store.bytes, store.count) == before == truth(store)
    assert not store._db.in_transaction
    assert store.get("big") is None
    for i in range(5):
        assert store.get(f"k{i}", now=20).body == bytes([i]) * 1000
    # replacing an existing key with a bigger body also fails cleanly
    with pytest.raises(StoreError):
        store.put(mk("k0", "/p/0", os.urandom(50_000)), now=21)
    assert store.get("k0").body == bytes([0]) * 1000
    assert (store.bytes, store.count) == before == truth(store)
    # once there is room again, writes work
    store._db.execute("PRAGMA max_page_count=1073741823")
    store.put(mk("big", "/big", b"b" * 50_000), now=30)
    assert (store.bytes, store.count) == truth(store)
    assert store.count == 6


def test_the_date_github_vouched_and_when_it_was_asked_for_round_trip(store):
    store.put(mk("k", vouched=1_700_000_123.0, asked_at=55.5))
    got = store.get("k")
    assert (got.vouched, got.asked_at) == (1_700_000_123.0, 55.5)
    assert (store.head("k").vouched, store.head("k").asked_at) == (1_700_000_123.0, 55.5)


def test_an_older_store_is_migrated_and_its_rows_read_as_unknown(tmp_path):
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)  # the schema of the first release
    old.executescript("""
        CREATE TABLE entries (key TEXT PRIMARY KEY, path TEXT NOT NULL, status INTEGER NOT NULL,
            headers TEXT NOT NULL, body BLOB NOT NULL, fetched_at REAL NOT NULL,
            size INTEGER NOT NULL, accessed_at REAL NOT NULL);
        CREATE INDEX entries_path ON entries(path);
        INSERT INTO entries VALUES ('k', '/repos/o/r', 200, '{"etag": "\\"e\\""}', X'7B7D',
                                    1000.0, 10, 1000.0);""")
    old.commit()
    old.close()
    s = Store(path)
    try:
        got = s.get("k")
        assert got.body == b"{}" and got.etag == '"e"'
        assert got.vouched is None and got.asked_at == 0.0  # before any start or drop
        s.put(mk("k2", vouched=5.0, asked_at=6.0))
        assert (s.get("k2").vouched, s.get("k2").asked_at) == (5.0, 6.0)
        assert s.drop(["/REPOS/O/R"], []) == 2
    finally:
        s.close()


def test_drop_exact_paths_take_every_query_but_nothing_below(store):
    for key, path in (("a", "/repos/o/r/issues"), ("a2", "/repos/o/r/issues"),
                      ("b", "/repos/o/r/issues/5"), ("c", "/repos/o/r/issuesx")):
        store.put(mk(key, path))
    assert store.drop(["/repos/O/R/Issues"], []) == 2
    assert {store.get(k) is None for k in ("a", "a2")} == {True}
    assert store.get("b") and store.get("c")
    assert (store.bytes, store.count) == truth(store)


def test_drop_trees_take_the_path_and_below_ignoring_case_and_nothing_beside(store):
    for key, path in (("r", "/repos/o/r"), ("i", "/Repos/O/R/issues/5/comments"),
                      ("r0", "/repos/o/r0"), ("rx", "/repos/o/rx"), ("s", "/repos/o/s")):
        store.put(mk(key, path))
    assert store.drop([], ["/repos/o/r"]) == 2
    assert store.get("r") is None and store.get("i") is None
    assert store.get("r0") and store.get("rx") and store.get("s")


def test_drop_at_most_limit(store):
    for i in range(10):
        store.put(mk(f"k{i}", f"/repos/o/r/issues/{i}"))
    assert store.drop([], ["/repos/o/r/issues"], limit=4) == 4
    assert store.count == 6 and (store.bytes, store.count) == truth(store)


def test_count_is_what_drop_would_take_and_takes_nothing(store):
    for i in range(10):
        store.put(mk(f"k{i}", f"/repos/o/r/issues/{i}"))
    store.put(mk("list", "/repos/O/R/issues"))
    assert store.count_under([], ["/repos/o/r/issues"]) == 11
    assert store.count_under(["/repos/o/r/issues"], [], limit=5) == 1
    assert store.count_under([], ["/repos/o/r"], limit=5) == 5
    assert store.count == 11


def test_store_error_on_closed_connection(tmp_path):
    s = Store(tmp_path / "c.db")
    s._db.close()
    with pytest.raises(StoreError):
        s.put(mk("k"))
    with pytest.raises(StoreError):
        s.invalidate(["/x"])


def _filled(path, n=50):
    s = Store(path)
    for i in range(n):
        s.put(mk(f"k{i}", f"/p/{i}", bytes([i]) * 3000), now=i)
    s.close()


def _assert_moved_aside_and_empty(path):
    s = Store(path)
    try:
        assert (s.bytes, s.count) == (0, 0)
        assert s.get("k1") is None
        s.put(mk("new"))
        assert s.get("new") is not None
    finally:
        s.close()
    aside = [p for p in path.parent.iterdir() if p.name.startswith(path.name + ".corrupt-")]
    assert len(aside) == 1


def test_structurally_corrupt_file_is_moved_aside(tmp_path):
    """A flipped page-header byte that quick_check reports (rather than raises on)."""
    path = tmp_path / "cache.db"
    _filled(path)
    raw = bytearray(path.read_bytes())
    raw[4096 + 5] ^= 0xFF  # page 2's cell-content offset
    path.write_bytes(bytes(raw))
    check = sqlite3.connect(path)
    try:
        assert check.execute("PRAGMA quick_check").fetchone()[0] != "ok"
    finally:
        check.close()
    _assert_moved_aside_and_empty(path)


@pytest.mark.parametrize("where", ["whole file", "pages after the header"])
def test_garbage_file_is_moved_aside(tmp_path, where):
    path = tmp_path / "cache.db"
    _filled(path)
    raw = bytearray(path.read_bytes())
    rng = random.Random(1234)  # fixed garbage: the outcome must not depend on luck
    if where == "whole file":
        raw = bytearray(rng.randbytes(len(raw)))
    else:
        raw[4096:4096 * 10] = rng.randbytes(4096 * 9)
    path.write_bytes(bytes(raw))
    _assert_moved_aside_and_empty(path)
