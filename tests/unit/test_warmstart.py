"""Unit tests for warmstart.py: what a server offers a joining runner, and how the runner
takes an offer (every byte of it hostile until checked). Real SQLite files, no sockets."""

from __future__ import annotations

import json

import pytest

from p2pcache.cache import Cache
from p2pcache.models import ApiRequest, ApiResponse
from p2pcache.policy import cache_key, entry_from
from p2pcache.protocol import Message
from p2pcache.refresh import Asks
from p2pcache.stats import Counters
from p2pcache.store import Store
from p2pcache.targets import parse
from p2pcache.warmstart import (MAX_BYTES, MAX_ENTRIES, WarmStartError, candidates, offer,
                                take)

NOW = 1_700_000_000.0
TTL = 60.0
BUDGET = 1024 * 1024


def ask(target: str, **headers: str) -> ApiRequest:
    return ApiRequest("GET", parse(target), {k.replace("_", "-"): v for k, v in headers.items()})


def answer(body: bytes, fetched_at: float = NOW, **headers: str) -> ApiResponse:
    return ApiResponse(200, {"etag": '"e"', "content-type": "application/json", **headers},
                       body, "miss", fetched_at=fetched_at)


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "server.db")
    yield s
    s.close()


def serve(store: Store, asks: Asks, request: ApiRequest, response: ApiResponse,
          times: int = 1, at: float = NOW) -> None:
    """What the server does for an answered ask: store it (a miss) and note the ask."""
    store.put(entry_from(cache_key(request), request, response, response.fetched_at))
    for _ in range(times):
        asks.note(request, response, at)


def item(path: str = "/repos/o/r", size: int = 2, **over: object) -> dict:
    base: dict[str, object] = {"path": path, "request_headers": {}, "status": 200,
                               "headers": {"etag": '"e"'}, "fetched_at": NOW, "size": size}
    base.update(over)
    return base


# -- the server's offer ------------------------------------------------------------------

def test_the_offer_holds_fresh_recent_entries_most_asked_first(store):
    asks = Asks()
    serve(store, asks, ask("/repos/o/once"), answer(b"1"))
    serve(store, asks, ask("/repos/o/often"), answer(b"22"), times=3)
    serve(store, asks, ask("/repos/o/stale"), answer(b"3", fetched_at=NOW - TTL - 1), times=5)
    serve(store, asks, ask("/repos/o/long-ago"), answer(b"4"), at=NOW - 3600)
    message = offer(candidates(asks, NOW, TTL), store, NOW, TTL, BUDGET)
    assert [e["path"] for e in message.meta["entries"]] == ["/repos/o/often", "/repos/o/once"]
    assert message.body == b"221"
    assert [e["size"] for e in message.meta["entries"]] == [2, 1]


def test_the_offer_keeps_to_the_budget_and_skips_what_does_not_fit(store):
    asks = Asks()
    serve(store, asks, ask("/repos/o/big"), answer(b"x" * 5000), times=3)
    serve(store, asks, ask("/repos/o/small"), answer(b"y" * 10))
    message = offer(candidates(asks, NOW, TTL), store, NOW, TTL, 1000)
    assert [e["path"] for e in message.meta["entries"]] == ["/repos/o/small"]
    assert offer(candidates(asks, NOW, TTL), store, NOW, TTL, 0).meta == {"entries": []}
    # A budget beyond one frame is cut to one frame.
    huge = offer(candidates(asks, NOW, TTL), store, NOW, TTL, 10 * MAX_BYTES)
    assert len(huge.meta["entries"]) == 2


def test_the_offer_carries_the_representation_headers_never_credentials(store):
    asks = Asks()
    request = ask("/repos/o/r", accept="application/vnd.github.raw+json",
                  authorization="Bearer ghp_secret", cookie="c=1")
    serve(store, asks, request, answer(b"raw"))
    [entry] = offer(candidates(asks, NOW, TTL), store, NOW, TTL, BUDGET).meta["entries"]
    assert entry["request_headers"] == {"accept": "application/vnd.github.raw+json"}
    assert "ghp_secret" not in json.dumps(entry)


# -- the runner takes it: a round trip, then hostile offers -------------------------------

def test_an_offer_round_trips_into_the_runners_store(store, tmp_path):
    asks = Asks()
    request = ask("/repos/o/r?b=2&a=1", accept="application/vnd.github.raw+json")
    serve(store, asks, request, answer(b'{"id":1}', fetched_at=NOW - 10), times=2)
    message = offer(candidates(asks, NOW, TTL), store, NOW, TTL, BUDGET)
    runner = Store(tmp_path / "runner.db")
    try:
        cache = Cache(runner, upstream=None, counters=Counters(), ttl=TTL)  # type: ignore[arg-type]
        stored = cache.adopt(take(Message.decode(message.encode()), BUDGET, NOW))
        assert [e.key for e in stored] == [cache_key(request)]
        held = runner.get(cache_key(request))
        assert held is not None and held.body == b'{"id":1}'
        assert held.fetched_at == NOW - 10, "the entry keeps the time GitHub vouched for it"
        # Taken again: nothing newer, nothing stored.
        assert cache.adopt(take(message, BUDGET, NOW)) == []
    finally:
        runner.close()


def test_a_newer_entry_the_runner_holds_is_kept(tmp_path):
    runner = Store(tmp_path / "runner.db")
    try:
        cache = Cache(runner, upstream=None, counters=Counters(), ttl=TTL)  # type: ignore[arg-type]
        request = ask("/repos/o/r")
        runner.put(entry_from(cache_key(request), request, answer(b"mine"), NOW))
        older = Message({"entries": [item(size=5, fetched_at=NOW - 5)]}, b"yours")
        assert cache.adopt(take(older, BUDGET, NOW)) == []
        assert runner.get(cache_key(request)).body == b"mine"
    finally:
        runner.close()


@pytest.mark.parametrize("meta, body, why", [
    ({}, b"", "entries must be a list"),
    ({"entries": {"path": "/x"}}, b"", "entries must be a list"),
    ({"entries": [item()] * (MAX_ENTRIES + 1)}, b"xx" * (MAX_ENTRIES + 1), "at most"),
    ({"entries": [item(size=3)]}, b"xx", "do not add up"),
    ({"entries": [item(size=1)]}, b"xx", "do not add up"),
    ({"entries": [item(size=-2), item(size=4)]}, b"xx", "do not add up"),
    ({"entries": [item(size=2.0)]}, b"xx", "do not add up"),
    ({"entries": [item(size=True), item(size=1)]}, b"xx", "do not add up"),
    ({"entries": ["/repos/o/r"]}, b"", "do not add up"),
    ({"entries": [item(size=BUDGET + 1)]}, b"x" * (BUDGET + 1), "asked for"),
])
def test_a_malformed_offer_is_refused_whole(meta, body, why):
    with pytest.raises(WarmStartError, match=why):
        take(Message(meta, body), BUDGET, NOW)


@pytest.mark.parametrize("bad", [
    {"path": "//evil.example/x"},
    {"path": "https://evil.example/repos/o/r"},
    {"path": "/repos/o/r\r\nHost: evil"},
    {"path": "/repos/ö/r"},
    {"path": "/" + "a" * 9000},
    {"path": 7},
    {"status": "200"},
    {"status": True},
    {"fetched_at": "soon"},
    {"fetched_at": float("nan")},
    {"fetched_at": float("inf")},
    {"headers": ["etag", '"e"']},
    {"request_headers": "accept: x"},
])
def test_a_bad_entry_is_dropped_and_the_good_ones_still_count(bad):
    message = Message({"entries": [{**item("/repos/o/bad"), **bad}, item("/repos/o/good")]},
                      b"xxgg")
    taken = take(message, BUDGET, NOW)
    assert [(str(r.target), a.body) for r, a in taken] == [("/repos/o/good", b"gg")]


def test_fields_are_cleaned_and_times_never_in_the_future(tmp_path):
    message = Message({"entries": [item(
        headers={"etag": '"e"', "x-bad": "café", "bad name": "v", "content-type": "a/b"},
        request_headers={"accept": "application/vnd.github.raw+json",
                         "authorization": "token stolen", "x-evil": "é"},
        fetched_at=NOW + 3600)]}, b"xx")
    [(request, response)] = take(message, BUDGET, NOW)
    assert response.headers == {"etag": '"e"', "content-type": "a/b"}
    assert request.headers == {"accept": "application/vnd.github.raw+json"}
    assert response.fetched_at == NOW, "a clock ahead of ours keeps nothing fresh longer"


def test_only_cacheable_answers_are_stored(tmp_path):
    runner = Store(tmp_path / "runner.db")
    try:
        cache = Cache(runner, upstream=None, counters=Counters(), ttl=TTL)  # type: ignore[arg-type]
        message = Message({"entries": [
            item("/repos/o/missing", status=404),
            item("/repos/o/private", headers={"cache-control": "no-store"}),
            item("/repos/o/ok")]}, b"xxyyzz")
        assert [e.path for e in cache.adopt(take(message, BUDGET, NOW))] == ["/repos/o/ok"]
    finally:
        runner.close()


def test_many_small_entries_are_not_crowded_out_by_one_big_one(store):
    asks = Asks()
    serve(store, asks, ask("/repos/o/r/pulls"), answer(b"p" * 700_000), times=2)
    small = [f"/repos/o/r/branches/b{i}" for i in range(30)]
    for path in small:
        serve(store, asks, ask(path), answer(b"b" * 500))
    message = offer(candidates(asks, NOW, TTL), store, NOW, TTL, 700_000)
    assert sorted(e["path"] for e in message.meta["entries"]) == sorted(small)
    # With room for all, everything goes.
    roomy = offer(candidates(asks, NOW, TTL), store, NOW, TTL, 2_000_000)
    assert len(roomy.meta["entries"]) == 31


def test_the_offer_reads_only_the_bodies_it_sends(store, monkeypatch):
    """Ranking uses stored sizes: a hot set far larger than the budget is never loaded."""
    asks = Asks()
    for i in range(40):
        serve(store, asks, ask(f"/repos/o/r/big{i}"), answer(b"z" * 100_000))
    read = []
    real_get = store.get
    monkeypatch.setattr(store, "get", lambda key, now=None: read.append(key) or real_get(key))
    message = offer(candidates(asks, NOW, TTL), store, NOW, TTL, 350_000)
    assert len(message.meta["entries"]) == 3 and len(read) == 3
    head = store.head(cache_key(ask("/repos/o/r/big0")))
    assert head.body == b"" and head.size == store.get(cache_key(ask("/repos/o/r/big0"))).size


def test_offers_are_bounded_for_all_peers_together_by_what_they_weigh():
    """The responder's bound (mesh/answering.py): fresh peer IDs do not buy more offers.
    Full offers: 2 back to back, then one per interval; small ones cost a fraction."""
    from p2pcache.mesh.answering import WARM_BURST, WARM_FLEET_INTERVAL, WARM_INTERVAL
    from p2pcache.warmstart import OfferBudget

    def flood(size: int) -> list[int]:
        offers = OfferBudget(WARM_INTERVAL, WARM_BURST, WARM_FLEET_INTERVAL)
        granted = []
        for i in range(30):  # 30 fresh peer IDs spread over 10 s
            wait, charged = offers.admit(f"fresh{i}", i / 3)
            if wait == 0:
                offers.settle(charged, size)
                granted.append(i)
        return granted

    assert len(flood(MAX_BYTES)) <= 3, "full offers (the red team's 14.7 MB)"
    assert len(flood(MAX_BYTES // 2)) <= 5
    assert len(flood(20_000)) == 30, "a small hot set is offered to every joining runner"

    offers = OfferBudget(WARM_INTERVAL, WARM_BURST, WARM_FLEET_INTERVAL)
    for peer in ("a", "b"):
        _, charged = offers.admit(peer, 0.0)
        offers.settle(charged, MAX_BYTES)
    # a runner asking right after is told when to ask again, and is served then
    wait, _ = offers.admit("runner", 0.5)
    assert 0 < wait <= WARM_FLEET_INTERVAL
    assert offers.admit("runner", 0.5 + wait)[0] == 0
    # the peer's own minute still holds for a peer that got one
    assert 0 < offers.admit("a", 30.0)[0] <= WARM_INTERVAL
    # a bigger offer than estimated is charged after, and the next ones wait for it
    offers = OfferBudget(WARM_INTERVAL, WARM_BURST, WARM_FLEET_INTERVAL)
    offers.settle(offers.admit("x", 0.0)[1], 1)  # the first: tiny, so the estimate is small
    wait, charged = offers.admit("y", 0.0)
    assert wait == 0 and charged < 0.1  # built on the small estimate ...
    offers.settle(charged, 2 * MAX_BYTES)  # ... it weighed a full offer (capped at one)
    wait, _ = offers.admit("z", 0.0)
    assert 0 < wait < 1, "the next is charged what the last weighed: a full offer"
    later, charged = offers.admit("z", wait)
    assert later == 0 and charged == 1.0
    offers.settle(charged, MAX_BYTES)
    assert offers.admit("w", wait)[0] > 5, "and the bucket is spent"


def test_an_offer_given_again_costs_what_it_sends():
    """A shelved offer (warmstart.Shelf) is charged its bytes on the wire: once one full
    hot set is built, a queue of joiners each gets it for a fraction of a build, while a
    flood of builds is still held to the burst."""
    from p2pcache.mesh.answering import WARM_BURST, WARM_FLEET_INTERVAL, WARM_INTERVAL
    from p2pcache.warmstart import OfferBudget

    offers = OfferBudget(WARM_INTERVAL, WARM_BURST, WARM_FLEET_INTERVAL)
    wait, charged = offers.admit("first", 0.0)
    offers.settle(charged, MAX_BYTES)  # built: a full hot set read and compressed
    compressed = MAX_BYTES // 10
    given = [peer for peer in (f"joiner{n}" for n in range(12))
             if offers.admit(peer, 0.0, sends=compressed)[0] == 0]
    assert len(given) == 10, given  # 1 full offer left in the bucket, a tenth each
    # the build estimate is still a full one: a build now waits for the bucket
    wait, _ = offers.admit("builder", 0.0)
    assert wait > 0
    # a flood of builds alone: the old bound
    flood = OfferBudget(WARM_INTERVAL, WARM_BURST, WARM_FLEET_INTERVAL)
    built = 0
    for i in range(30):
        wait, charged = flood.admit(f"fresh{i}", i / 3)
        if wait == 0:
            flood.settle(charged, MAX_BYTES)
            built += 1
    assert built <= 3


def test_the_shelf_gives_an_offer_only_for_the_same_ask_and_version_while_it_keeps():
    from p2pcache.warmstart import Shelf

    shelf = Shelf(keep=10.0)
    answer = Message({"entries": []}, b"x")
    assert shelf.get((MAX_BYTES, ("zlib",)), 1, 0.0) is None  # nothing yet
    shelf.put((MAX_BYTES, ("zlib",)), 1, 100.0, answer)
    assert shelf.get((MAX_BYTES, ("zlib",)), 1, 105.0) is answer
    assert shelf.get((MAX_BYTES, ()), 1, 105.0) is None, "another encoding: built for it"
    assert shelf.get((1000, ("zlib",)), 1, 105.0) is None, "another budget"
    assert shelf.get((MAX_BYTES, ("zlib",)), 2, 105.0) is None, "a drop or a new entry since"
    assert shelf.get((MAX_BYTES, ("zlib",)), 1, 110.0) is None, "kept 10 s, no longer"
    assert shelf.get((MAX_BYTES, ("zlib",)), 1, 99.0) is None, "a clock that went back"


def test_an_answer_that_does_not_compress_into_a_frame_is_built_again_smaller():
    """A runner that takes zlib is offered up to what a frame inflates to (MAX_BYTES);
    if the hot set does not compress into one frame, the server builds it again within
    what a frame carries as it is (MAX_PLAIN_BYTES), and shelves that."""
    import os
    from types import SimpleNamespace

    import trio

    from p2pcache.mesh.answering import Responder
    from p2pcache.protocol import MAX_FRAME_BYTES
    from p2pcache.warmstart import MAX_PLAIN_BYTES

    asked: list[int] = []
    noise = os.urandom(MAX_BYTES)

    async def offer(budget: int) -> Message:
        asked.append(budget)
        return Message({"entries": [{"size": budget}]}, noise[:budget])

    async def main() -> None:
        mesh = SimpleNamespace(counters=Counters())
        responder = Responder(mesh, None, offer)  # type: ignore[arg-type]
        answer, wait = await responder._warm_answer("p", (10**12, ("zlib",)), 10**12, ["zlib"])
        assert wait == 0 and answer is not None
        assert asked == [MAX_BYTES, MAX_PLAIN_BYTES]
        assert len(answer.body) <= MAX_PLAIN_BYTES < MAX_FRAME_BYTES
        plain, _ = await responder._warm_answer("q", (10**12, None), 10**12, None)
        assert asked[-1] == MAX_PLAIN_BYTES and "encoding" not in plain.meta
        assert mesh.counters.warm_offers_built == 2

    trio.run(main)


@pytest.mark.parametrize("encodings", [None, "zlib", 7, [{"x": 1}, None, "zlib"], ["x"] * 5000])
def test_whatever_a_peer_sends_as_encodings_the_answer_is_built_and_shelved(encodings):
    """The shelf's key is made of the peer's `encodings`: anything a frame can carry is
    taken, never trusted for more than a membership test."""
    from types import SimpleNamespace

    import trio

    from p2pcache.mesh.answering import Responder
    from p2pcache.warmstart import ask_key

    async def offer(budget: int) -> Message:
        return Message({"entries": [{"size": 4}]}, b"{}{}" * 512)

    async def main() -> None:
        mesh = SimpleNamespace(counters=Counters())
        responder = Responder(mesh, None, offer)  # type: ignore[arg-type]
        ask = ask_key(MAX_BYTES, encodings)
        answer, wait = await responder._warm_answer("p", ask, MAX_BYTES, encodings)
        assert wait == 0 and answer is not None
        again, _ = await responder._warm_answer("q", ask, MAX_BYTES, encodings)
        assert again is answer and mesh.counters.warm_offers_built == 1

    trio.run(main)
