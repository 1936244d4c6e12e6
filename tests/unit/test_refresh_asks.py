"""Unit tests for refresh.Asks: what refresh-ahead remembers of client asks (no sockets)."""

from __future__ import annotations

from p2pcache.models import ApiRequest, ApiResponse
from p2pcache.policy import cache_key
from p2pcache.refresh import MAX_KEY_CHARS, Asks
from p2pcache.targets import parse

NOW = 1_700_000_000.0
TTL = 60.0


def ask(target: str, method: str = "GET", **headers: str) -> ApiRequest:
    return ApiRequest(method, parse(target), {k.replace("_", "-"): v for k, v in headers.items()})


def cached(fetched_at: float = NOW) -> ApiResponse:
    return ApiResponse(200, {}, b"{}", "hit", fetched_at=fetched_at)


def test_asked_twice_becomes_due_before_it_goes_stale():
    asks = Asks()
    asks.note(ask("/repos/o/r"), cached(), NOW)
    assert asks.due(NOW + 55, TTL) == [], "asked once: never refreshed"
    asks.note(ask("/repos/o/r"), cached(), NOW + 1)
    assert asks.due(NOW + 49, TTL) == []
    [(key, hot)] = asks.due(NOW + 50, TTL)
    assert key == cache_key(ask("/repos/o/r")) and hot.asks == 2


def test_the_refetch_request_is_a_get_with_representation_headers_only():
    asks = Asks()
    request = ask("/repos/o/r?b=2&a=1", "HEAD", accept="application/vnd.github.raw+json",
                  x_github_api_version="2022-11-28", authorization="Bearer ghp_secret",
                  if_none_match='W/"x"', cookie="c=1", user_agent="gh")
    asks.note(request, cached(), NOW)
    asks.note(request, cached(), NOW)
    [(key, hot)] = asks.due(NOW + 59, TTL)
    assert hot.request.method == "GET"
    assert str(hot.request.target) == "/repos/o/r?a=1&b=2"
    assert hot.request.headers == {"accept": "application/vnd.github.raw+json",
                                   "x-github-api-version": "2022-11-28"}
    assert key == cache_key(request), "the refresh fills the entry the client asks for"


def test_uncached_answers_are_not_tracked():
    asks = Asks()
    for _ in range(3):
        asks.note(ask("/repos/o/missing"), ApiResponse(404, {}, b"{}"), NOW)
    assert len(asks) == 0


def test_bounded_least_recently_asked_forgotten_first():
    asks = Asks(max_keys=3)
    for i in range(5):
        asks.note(ask(f"/repos/o/r{i}"), cached(), NOW + i)
    asks.note(ask("/repos/o/r2"), cached(), NOW + 5)  # r2 is asked again: kept
    asks.note(ask("/repos/o/r5"), cached(), NOW + 6)
    assert len(asks) == 3
    kept = {hot.request.target.path for _, hot in asks._hot.items()}
    assert kept == {"/repos/o/r2", "/repos/o/r4", "/repos/o/r5"}


def test_hostile_huge_keys_are_not_tracked():
    asks = Asks()
    long_target = ask("/repos/o/" + "r" * MAX_KEY_CHARS)
    huge_accept = ask("/repos/o/r", accept="application/vnd.github." + "x" * 10_000)
    for request in (long_target, huge_accept):
        asks.note(request, cached(), NOW)
        asks.note(request, cached(), NOW)
    assert len(asks) == 0


def test_refreshed_moves_the_clock_and_forgets_gone_entries():
    asks = Asks()
    for target in ("/a", "/b"):
        asks.note(ask(target), cached(), NOW)
        asks.note(ask(target), cached(), NOW)
    key_a, key_b = cache_key(ask("/a")), cache_key(ask("/b"))
    asks.refreshed(key_a, NOW + 55)
    asks.refreshed(key_b, None)
    assert asks.due(NOW + 56, TTL) == []
    assert [k for k, _ in asks.due(NOW + 105, TTL)] == [key_a]
    asks.refreshed(key_a, NOW)  # an older answer never moves it back
    assert asks.due(NOW + 56, TTL) == []


def test_most_urgent_first():
    asks = Asks()
    for target, fetched in (("/late", NOW + 5), ("/early", NOW)):
        asks.note(ask(target), cached(fetched), NOW + 5)
        asks.note(ask(target), cached(fetched), NOW + 5)
    assert [h.request.target.path for _, h in asks.due(NOW + 60, TTL)] == ["/early", "/late"]
