"""Cache.get asks for the fleet's entry while GitHub is asked whether the caller may have it
(cache._ask_ahead): one round trip before a repository's first answer instead of two, only
for a caller GitHub has confirmed, and never an answer the verdict refuses."""

from __future__ import annotations

import json

import pytest
import trio

from p2pcache.access import Callers
from p2pcache.cache import Cache
from p2pcache.models import ApiRequest, ApiResponse
from p2pcache.stats import Counters
from p2pcache.store import Store
from p2pcache.targets import parse
from p2pcache.upstream import Credentials, Upstream

NOW = 1_800_000_000.0
GOOD, BAD = "ghp_good", "ghp_bad"


class Routed(Upstream):
    """GitHub in the process: a public repository o/pub, a private o/priv that only the
    fleet's token reads, 80 ms a request; counts what reaches it and how much at once."""

    def __init__(self) -> None:
        super().__init__("https://api.github.com", "ghp_fleet")
        self.sent: list[tuple[str, str | None]] = []
        self.in_flight = self.most = 0

    async def send(self, request, conditional=None, credentials=Credentials.FLEET):
        auth = self.authorization(request, credentials)
        self.sent.append((request.target.path, auth))
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await trio.sleep(0.08)
        finally:
            self.in_flight -= 1
        path = request.target.path
        token = (auth or "").split(" ")[-1]
        if token == BAD:
            return answer(401, {"message": "Bad credentials"})
        if path == "/rate_limit":
            return answer(200, {"resources": {}})
        if path.startswith("/repos/o/priv") and token != "ghp_fleet":
            return answer(404, {"message": "Not Found"})
        if path in ("/repos/o/pub", "/repos/o/priv"):
            private = path.endswith("priv")
            return answer(200, {"id": 1 if private else 2, "full_name": path[7:],
                                "private": private,
                                "visibility": "private" if private else "public"})
        return answer(200, [{"title": f"secret of {path}"}])


def answer(status: int, body: object) -> ApiResponse:
    return ApiResponse(status, {"content-type": "application/json", "etag": '"e"',
                                "x-ratelimit-limit": "5000",
                                "x-ratelimit-remaining": "4999"}, json.dumps(body).encode())


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "cache.db")
    yield s
    s.close()


def cache_with(store: Store, github: Routed) -> Cache:
    return Cache(store, github, Counters(), ttl=60, clock=lambda: NOW + trio.current_time(),
                 callers=Callers(b"k" * 32))


def get(path: str, token: str) -> ApiRequest:
    return ApiRequest("GET", parse(path), {"authorization": f"token {token}"})


def test_a_confirmed_caller_waits_one_round_trip_not_two(store):
    async def main():
        github = Routed()
        cache = cache_with(store, github)
        assert await cache.confirm({"authorization": f"token {GOOD}"}) is True
        github.sent.clear()
        response = await cache.get(get("/repos/o/pub/issues", GOOD))
        assert response.status == 200 and b"secret of /repos/o/pub/issues" in response.body
        assert {p for p, _ in github.sent} == {"/repos/o/pub", "/repos/o/pub/issues"}
        assert github.most == 2, "the view and the entry asked at once"

    trio.run(main)


def test_a_client_without_a_token_is_answered_in_one_round_trip_too(store):
    """The node's own clients often send no token (the node holds it): public data, read
    with the fleet's token either way; a private repository stays GitHub's 404."""
    async def main():
        github = Routed()
        cache = cache_with(store, github)
        anonymous = ApiRequest("GET", parse("/repos/o/pub/pulls"), {})
        response = await cache.get(anonymous)
        assert response.status == 200 and github.most == 2
        hidden = await cache.get(ApiRequest("GET", parse("/repos/o/priv/pulls"), {}))
        assert hidden.status == 404 and b"secret" not in hidden.body

    trio.run(main)


def test_an_unconfirmed_token_never_spends_the_fleets_budget_ahead(store):
    async def main():
        github = Routed()
        cache = cache_with(store, github)
        response = await cache.get(get("/repos/o/pub/issues", BAD))
        assert response.status == 401
        assert all(p != "/repos/o/pub/issues" or auth and BAD in auth
                   for p, auth in github.sent), github.sent

    trio.run(main)


def test_what_the_verdict_refuses_is_never_given_though_it_was_asked_ahead(store):
    async def main():
        github = Routed()
        cache = cache_with(store, github)
        assert await cache.confirm({"authorization": f"token {GOOD}"}) is True
        response = await cache.get(get("/repos/o/priv/issues", GOOD))
        assert response.status == 404 and b"secret" not in response.body
        assert ("/repos/o/priv/issues", "Bearer ghp_fleet") in github.sent, "asked ahead"

    trio.run(main)
