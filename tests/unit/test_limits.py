"""Unit tests for limits.py: GitHub's budgets per token (turns in flight, pauses, refresh-ahead's
paid share), and how Cache and Refresher keep them. Virtual time (trio's MockClock), a stub
GitHub in the process, real SQLite; no sockets."""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing

from p2pcache import limits
from p2pcache.cache import Cache, Refreshed
from p2pcache.limits import (ANONYMOUS, Limits, PaidShare, Pauses, Turns, credential_key)
from p2pcache.models import ApiRequest, ApiResponse
from p2pcache.policy import RateLimit
from p2pcache.refresh import Asks, Refresher
from p2pcache.stats import Counters
from p2pcache.store import Store
from p2pcache.targets import parse
from p2pcache.upstream import Credentials, Upstream, UpstreamError

NOW = 1_700_000_000.0
SECRET = b"k" * 32


def run(afn):
    return trio.run(afn, clock=trio.testing.MockClock(autojump_threshold=0))


def secondary_limit(retry_after: str | None = "30") -> ApiResponse:
    headers = {"content-type": "application/json", "x-ratelimit-remaining": "4990"}
    if retry_after is not None:
        headers["retry-after"] = retry_after
    return ApiResponse(403, headers, b'{"message":"You have exceeded a secondary rate limit."}')


# -- credentials ---------------------------------------------------------------------------

def test_a_credential_is_known_by_a_keyed_hash_never_by_itself():
    key = credential_key(SECRET, "token ghp_abc123")
    assert key == credential_key(SECRET, "Bearer ghp_abc123") == credential_key(
        SECRET, "bearer  ghp_abc123"), "one token, whatever the scheme's spelling"
    assert "ghp_abc123" not in key and "abc123" not in key
    assert key != credential_key(SECRET, "token ghp_other")
    assert key != credential_key(b"x" * 32, "token ghp_abc123"), "keyed: another process, " \
        "another key"
    assert credential_key(SECRET, None) == credential_key(SECRET, " ") == ANONYMOUS
    assert credential_key(SECRET, "Basic dXNlcjpwYXNz") != ANONYMOUS


# -- turns ---------------------------------------------------------------------------------

def test_turns_cap_what_goes_at_once_and_hand_slots_on():
    turns: Turns[str] = Turns(2)
    assert turns.arrive("a", "a1") and turns.arrive("a", "a2")
    assert not turns.arrive("a", "a3") and turns.running == 2 and turns.waiting == 1
    assert turns.leave() == "a3" and turns.running == 2 and turns.waiting == 0
    assert turns.leave() is None and turns.leave() is None
    assert turns.idle


def test_turns_are_round_robin_across_askers_and_in_order_within_each():
    turns: Turns[str] = Turns(1)
    assert turns.arrive("flood", "f0")
    for i in range(1, 6):
        assert not turns.arrive("flood", f"f{i}")
    assert not turns.arrive("b", "b1") and not turns.arrive("b", "b2")
    assert not turns.arrive("c", "c1")
    order = [turns.leave() for _ in range(8)]
    assert order == ["f1", "b1", "c1", "f2", "b2", "f3", "f4", "f5"]


def test_a_waiter_that_gives_up_leaves_no_trace():
    turns: Turns[str] = Turns(1)
    turns.arrive("a", "a1")
    turns.arrive("b", "b1")
    turns.arrive("c", "c1")
    turns.give_up("b", "b1")
    turns.give_up("b", "b1")  # twice, or never queued: nothing happens
    turns.give_up("z", "z1")
    assert turns.waiting == 1 and turns.leave() == "c1" and turns.leave() is None
    assert turns.idle


# -- pauses --------------------------------------------------------------------------------

def test_a_pause_replays_githubs_refusal_with_the_seconds_left():
    pauses = Pauses()
    assert pauses.pause("k", NOW + 30, secondary_limit(), NOW)
    refusal = pauses.refusal("k", NOW + 10.5)
    assert refusal is not None and refusal.status == 403
    assert refusal.headers["retry-after"] == "20" and refusal.paused_until == NOW + 30
    assert b"secondary rate limit" in refusal.body
    assert pauses.refusal("other", NOW) is None
    assert pauses.refusal("k", NOW + 30) is None and pauses.until("k", NOW + 30) is None


def test_a_pause_begins_once_and_only_grows():
    pauses = Pauses()
    assert pauses.pause("k", NOW + 30, secondary_limit(), NOW)
    assert not pauses.pause("k", NOW + 10, secondary_limit("10"), NOW + 1)
    assert pauses.until("k", NOW + 2) == NOW + 30
    assert not pauses.pause("k", NOW + 60, secondary_limit("59"), NOW + 1)
    assert pauses.until("k", NOW + 2) == NOW + 60
    assert pauses.pause("k", NOW + 90, secondary_limit(), NOW + 61), "a new pause after one"


def test_pauses_are_bounded_in_number_and_in_bytes():
    pauses = Pauses(max_paused=3)
    for i in range(3):
        pauses.pause(f"k{i}", NOW + 10 + i, secondary_limit(), NOW)
    pauses.pause("k3", NOW + 100, ApiResponse(429, {}, b"x" * 10**6), NOW)
    assert pauses.until("k0", NOW) is None, "the shortest live pause made room"
    assert all(pauses.until(k, NOW) for k in ("k1", "k2", "k3"))
    assert len(pauses.refusal("k3", NOW).body) == limits.MAX_REFUSAL_BYTES  # type: ignore
    pauses.pause("k4", NOW + 100, secondary_limit(), NOW + 50)  # k1, k2 are over: dropped
    assert pauses.until("k3", NOW + 50) and pauses.until("k4", NOW + 50)


# -- refresh-ahead's paid share ------------------------------------------------------------

def test_the_paid_share_is_a_tenth_of_the_hourly_limit():
    share = PaidShare()
    paid = 0
    for second in range(151):  # one refresh wanted every second, every one a 200
        if share.reserve(NOW + second, 5000):
            share.settle(paid=True)
            paid += 1
    assert 24 <= paid <= 25, "issue 21 finding 5: at most 25 paid refreshes in 150 s"
    # An hour of it: 10 % of 5,000, plus the bucket it started with.
    for second in range(151, 3601):
        if share.reserve(NOW + second, 5000):
            share.settle(paid=True)
            paid += 1
    assert 500 <= paid <= 505, paid


def test_free_refreshes_give_their_token_back():
    share = PaidShare()
    for _ in range(1000):
        assert share.reserve(NOW, 5000), "a 304 costs nothing: the bucket never empties"
        share.settle(paid=False)
    # In flight together, each holds a token: at most what the bucket holds can be paid.
    held = 0
    while share.reserve(NOW, 5000):
        held += 1
    assert held == math.floor(0.1 * 5000 / 3600 * limits.REFRESH_BURST_S)
    for _ in range(held):
        share.settle(paid=False)
    assert share.left(NOW, 5000) == pytest.approx(held + 0.1666, abs=0.01)


def test_the_share_follows_the_limit_github_shows_and_never_starves():
    small = PaidShare()
    assert small.reserve(NOW, 60), "an anonymous budget still allows one"
    small.settle(paid=True)
    assert not small.reserve(NOW + 60, 60), "6 an hour: one every 10 minutes"
    assert small.reserve(NOW + 600, 60)
    unknown = PaidShare()
    assert unknown.left(NOW, None) == pytest.approx(0.1 * limits.DEFAULT_HOURLY / 120)


# -- the trio edge -------------------------------------------------------------------------

def test_no_more_than_the_cap_in_flight_per_token():
    async def main():
        budget = Limits(concurrency=5)
        seen = []

        async def ask(key: str) -> None:
            async with budget.turn(key) as refusal:
                assert refusal is None
                seen.append(budget.in_flight)
                await trio.sleep(1)

        async with trio.open_nursery() as nursery:
            for i in range(40):
                nursery.start_soon(ask, "token-a")
            for i in range(3):
                nursery.start_soon(ask, "token-b")
            await trio.testing.wait_all_tasks_blocked()
            assert budget.in_flight == 8 and budget.queued == 35
        assert max(seen) == 8 and budget.in_flight_max == 8  # 5 of token a + 3 of token b
        assert trio.current_time() == pytest.approx(8.0), "40 requests, 5 at a time"
        assert budget.in_flight == budget.queued == 0
        assert budget.counters.upstream_waited == 35
        assert budget._turns == {}, "idle tokens are forgotten"

    run(main)


def test_a_flooding_peer_does_not_starve_another():
    async def main():
        budget = Limits(concurrency=5)
        started: dict[str, list[float]] = {"flood": [], "other": []}

        async def ask(asker: str) -> None:
            limits.ASKER.set(asker)
            async with budget.turn("token"):
                started[asker].append(trio.current_time())
                await trio.sleep(1)

        async with trio.open_nursery() as nursery:
            for _ in range(100):
                nursery.start_soon(ask, "flood")
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(ask, "other")
        assert started["other"] == [1.0], "the next free slot, not after the flood's 95"
        assert max(started["flood"]) == 20.0

    run(main)


def test_a_waiter_that_goes_away_keeps_no_slot():
    async def main():
        budget = Limits(concurrency=1)
        with trio.CancelScope() as gone:
            gone.deadline = trio.current_time() + 0.5

            async def holder():
                async with budget.turn("t"):
                    await trio.sleep(1)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(holder)
                await trio.testing.wait_all_tasks_blocked()
                async with budget.turn("t"):  # waits, then its caller gives up at 0.5 s
                    raise AssertionError("never its turn")
        assert gone.cancelled_caught and budget.queued == 0

        # Handed a turn and cancelled before it ran: the turn passes on.
        async def take_and_cancel(scope_box: list) -> None:
            with trio.CancelScope() as scope:
                scope_box.append(scope)
                async with budget.turn("t"):
                    await trio.sleep(5)

        for cancel_first in (True, False):
            async with trio.open_nursery() as nursery:
                box: list = []
                async with budget.turn("t"):
                    nursery.start_soon(take_and_cancel, box)
                    await trio.testing.wait_all_tasks_blocked()
                    if cancel_first:
                        box[0].cancel()  # cancelled, not run yet: our turn is handed to it
                if not cancel_first:
                    box[0].cancel()  # the turn was just handed to it, it has not run yet
            assert budget.in_flight == 0 and budget._turns == {}
        async with budget.turn("t"):
            assert budget.in_flight == 1

    run(main)


def test_a_turn_not_given_in_time_is_github_unreachable():
    async def main():
        budget = Limits(concurrency=1, queue_timeout=3)
        async with trio.open_nursery() as nursery:
            async def holder():
                async with budget.turn("t"):
                    await trio.sleep(10)
            nursery.start_soon(holder)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(UpstreamError, match="no turn"):
                async with budget.turn("t"):
                    pass
            assert trio.current_time() == pytest.approx(3.0) and budget.queued == 0

    run(main)


def test_a_paused_token_gets_its_refusal_and_sends_nothing():
    async def main():
        clock = {"now": NOW}
        budget = Limits(concurrency=2, clock=lambda: clock["now"])
        assert budget.pause("t", NOW + 60, secondary_limit(None))
        assert not budget.pause("t", NOW + 30, secondary_limit(None))
        assert budget.counters.upstream_paused == 1
        async with budget.turn("t") as refusal:
            assert refusal is not None and refusal.headers["retry-after"] == "60"
            assert budget.in_flight == 0, "a refusal takes no slot"
        async with budget.turn("other") as refusal:
            assert refusal is None, "another token is not paused"
        clock["now"] = NOW + 60
        async with budget.turn("t") as refusal:
            assert refusal is None

    run(main)


# -- Cache: the request chain keeps the budgets --------------------------------------------

class StubGitHub(Upstream):
    """GitHub in the process: answers from a script, counts what reaches it."""

    def __init__(self, token: str | None = "ghp_node") -> None:
        super().__init__("https://api.github.com", token)
        self.sent: list[tuple[str, str | None]] = []
        self.answers: list[ApiResponse] = []
        self.in_flight = self.most = 0
        self.delay = 0.0

    async def send(self, request, conditional=None, credentials=Credentials.FLEET):
        self.sent.append((str(request.target), self.authorization(request, credentials)))
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await trio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        if self.answers:
            return self.answers.pop(0)
        return ApiResponse(200, {"etag": f'"{request.target}"', "content-type": "application/json",
                                 "x-ratelimit-limit": "5000", "x-ratelimit-remaining": "4999"},
                           b"{}")


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "cache.db")
    yield s
    s.close()


def get(target: str, **headers: str) -> ApiRequest:
    return ApiRequest("GET", parse(target), headers)


def test_a_secondary_limit_pauses_the_token_and_peers_are_told(store):
    async def main():
        github = StubGitHub()
        counters = Counters()
        cache = Cache(store, github, counters, ttl=60, clock=lambda: NOW + trio.current_time(),
                      limits=Limits(counters=counters, clock=lambda: NOW + trio.current_time()))

        async def peer(path: str) -> ApiResponse:
            return await cache.get(get(path), from_peer=True)

        assert (await peer("/repos/o/held")).status == 200
        github.answers.append(secondary_limit("30"))
        refused = await peer("/repos/o/a")
        assert refused.status == 403 and refused.paused_until == NOW + 30
        assert counters.upstream_paused == 1 and cache.paused_for() == 30
        await trio.sleep(10)
        sent = len(github.sent)
        # Paused: nothing is sent with the token; the refusal counts down; peers are told.
        again = await peer("/repos/o/b")
        assert again.status == 403 and again.headers["retry-after"] == "20"
        assert again.paused_until == NOW + 30
        assert len(github.sent) == sent and counters.upstream_requests == sent
        # What the node holds fresh is still answered, and is no pause.
        held = await peer("/repos/o/held")
        assert held.status == 200 and held.source == "hit" and held.paused_until is None
        # A stale entry: GitHub refuses its revalidation; the node's clients would get the
        # stale entry, a peer is told "paused".
        await trio.sleep(60)  # /repos/o/held is stale now, and the pause is over
        github.answers.append(secondary_limit("30"))
        stale = await peer("/repos/o/held")
        assert stale.stale and stale.status == 200 and stale.paused_until == NOW + 100
        # Two peers asking one key at once share one refusal, and both are told.
        await trio.sleep(31)
        github.delay = 1
        github.answers.append(secondary_limit("30"))
        results = []

        async def ask() -> None:
            results.append(await peer("/repos/o/c"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(ask)
        assert [r.source for r in results] == ["miss", "coalesced"]
        assert results[0].paused_until == results[1].paused_until is not None
        assert counters.upstream_paused == 3

    run(main)


def test_a_pause_lasts_as_long_as_github_asks(store):
    """The fake's concurrency refusal (GitHub's message, no retry-after): a minute; a spent
    primary budget: until its reset; a retry-after: that long (policy.blocked_until)."""
    async def main():
        github = StubGitHub()
        counters = Counters()
        cache = Cache(store, github, counters, ttl=60, clock=lambda: NOW + trio.current_time(),
                      limits=Limits(counters=counters, clock=lambda: NOW + trio.current_time()))
        reset = int(NOW) + 500
        for answer, until in (
                (secondary_limit(None), lambda now: now + 60),
                (ApiResponse(403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)},
                             b'{"message":"API rate limit exceeded for user ID 1."}'),
                 lambda now: reset),
                (ApiResponse(429, {"retry-after": "7"}, b"{}"), lambda now: now + 7)):
            github.answers.append(answer)
            now = NOW + trio.current_time()
            refused = await cache.get(get(f"/repos/o/r/issues/{int(now)}"), from_peer=True)
            assert refused.status == answer.status and refused.paused_until == until(now)
            assert cache.paused_for() == pytest.approx(until(now) - now)
            await trio.sleep(cache.paused_for())
            assert cache.paused_for() == 0
        assert counters.upstream_paused == 3

    run(main)


def test_each_client_token_has_its_own_pause_and_turns(store):
    async def main():
        github = StubGitHub()
        counters = Counters()
        budget = Limits(concurrency=3, counters=counters, clock=lambda: NOW + trio.current_time())
        cache = Cache(store, github, counters, ttl=60, clock=lambda: NOW + trio.current_time(),
                      limits=budget)
        mine = {"authorization": "token ghp_client1"}
        github.answers.append(secondary_limit("30"))
        first = await cache.passthrough(ApiRequest("POST", parse("/repos/o/r/issues"), mine))
        assert first.status == 403 and counters.upstream_paused == 1
        sent = len(github.sent)
        second = await cache.passthrough(ApiRequest("POST", parse("/repos/o/r/issues"), mine))
        assert second.status == 403 and len(github.sent) == sent, "that client's token waits"
        other = await cache.passthrough(ApiRequest("POST", parse("/repos/o/r/issues"),
                                                   {"authorization": "token ghp_client2"}))
        assert other.status == 200 and len(github.sent) == sent + 1
        assert (await cache.get(get("/repos/o/r"))).status == 200, "the node's token goes on"
        assert all("ghp_" not in key for key in budget._pauses._paused)

        github.delay = 1
        async with trio.open_nursery() as nursery:
            for i in range(12):
                nursery.start_soon(cache.get, get(f"/repos/o/many{i}"))
        assert github.most == 3 and budget.in_flight_max == 3

    run(main)


# -- Refresher: issue 21, finding 5 --------------------------------------------------------

class StubCache:
    """What Refresher needs of a Cache: every refresh changed (a 200), or none did."""

    def __init__(self, changed: bool) -> None:
        self.changed = changed
        self.counters = Counters()
        self.rate_limit = RateLimit(limit=5000, remaining=4000)
        self.sent: list[float] = []
        self.askers: set[str] = set()

    async def refresh(self, request: ApiRequest) -> Refreshed:
        self.askers.add(limits.ASKER.get())
        self.sent.append(trio.current_time())
        await trio.sleep(0.08)
        return Refreshed(NOW + trio.current_time(), paid=self.changed)


def refreshes_in_150_s(changed: bool, keys: int = 150) -> StubCache:
    cache = StubCache(changed)

    async def main():
        asks = Asks()
        for i in range(keys):  # one client asking 150 keys twice
            request = get(f"/repos/o/r{i}")
            for _ in range(2):
                asks.note(request, ApiResponse(200, {}, b"{}", fetched_at=NOW), NOW)
        refresher = Refresher(cache, 60.0, clock=lambda: NOW + trio.current_time(),
                              asks=asks)  # type: ignore[arg-type]
        with trio.move_on_after(150):
            await refresher.run()

    run(main)
    return cache


def test_refresh_ahead_pays_for_at_most_25_changed_entries_in_150_s():
    cache = refreshes_in_150_s(changed=True)
    # Due from 50 s on; the bucket holds 4 and gains one every 7.2 s: 18 by 150 s.
    assert 15 <= len(cache.sent) <= 25
    assert cache.counters.refreshes_over_budget >= 150 - 25
    assert cache.askers == {"refresh-ahead"}, "its turns to GitHub are its own"


def test_free_refreshes_are_not_held_by_the_paid_share():
    cache = refreshes_in_150_s(changed=False)
    assert len(cache.sent) >= 2 * 120, "only the per-minute bound holds 304s"
    assert cache.counters.refreshes_over_budget == 0


def test_the_default_cap_is_one_number():
    from p2pcache.config import Settings

    assert Settings().upstream_concurrency == limits.DEFAULT_CONCURRENCY == 25
    assert limits.MAX_CONCURRENCY == 100, "GitHub's own limit per token"
