"""GitHub's budgets, per token: requests in flight, secondary-limit pauses, and the share of
the hourly limit refresh-ahead may spend.

GitHub allows 100 requests in flight per token (REST and GraphQL together) and refuses a
token that goes over a secondary limit with 403 or 429: `retry-after`, or without it "wait at
least a minute" (until `x-ratelimit-reset` when the primary budget is spent). So:

- **In flight**: at most `concurrency` requests per token go to GitHub at once (the node's
  token, and each client credential it forwards); the others wait their turn. The turns are
  fair: round-robin across askers (each peer, the node's local clients, refresh-ahead),
  first come first served within each, so a runner that floods the server waits behind its
  own requests while every other runner's next request goes in the next free slot.
- **Pause**: a limit answer pauses its token until the time GitHub gave (policy.blocked_until,
  at most an hour). Meanwhile nothing is sent with it: GitHub's refusal is replayed with the
  seconds left, and a server tells its peers "paused" so that runners ask GitHub with their
  own token (mesh/answering.py).
- **Refresh-ahead's paid share**: refresh-ahead may spend at most REFRESH_SHARE of the
  token's hourly limit (as X-RateLimit-Limit shows it) on refreshes GitHub charges for (a
  200); a 304 is free and gives its token back (PaidShare).

Tokens are never held here: a credential is known by a keyed hash whose key lives in this
process only. Turns, Pauses and PaidShare are pure (the clock is an argument); Limits is the
trio edge that Cache._upstream goes through.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from collections import OrderedDict, deque
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import AsyncIterator, Callable, Generic, TypeVar

import trio

from .models import ApiResponse
from .stats import Counters
from .upstream import UpstreamError

DEFAULT_CONCURRENCY = 25  # ghproxy's; a quarter of GitHub's 100, room for other clients
MAX_CONCURRENCY = 100  # GitHub's own limit per token
QUEUE_TIMEOUT = 60.0  # seconds a request may wait for its turn; then it fails like GitHub down
MAX_PAUSED = 10_000  # credentials remembered while paused (each a hash and GitHub's refusal)
MAX_REFUSAL_BYTES = 16 * 1024  # of GitHub's refusal body kept to replay
REFRESH_SHARE = 0.10  # of the hourly limit, for refreshes that GitHub charges for
REFRESH_BURST_S = 30.0  # the bucket holds this many seconds of its rate
DEFAULT_HOURLY = 5000  # a user token's limit, until GitHub's headers say otherwise
ANONYMOUS = "anonymous"

# Who a request to GitHub is for, so turns are fair between askers. Set per task: the
# responder sets it for each peer's stream, refresh-ahead for its refreshes; local clients
# keep the default. trio copies it into the tasks a task starts.
ASKER: ContextVar[str] = ContextVar("p2pcache_asker", default="local")

T = TypeVar("T")


def credential_key(secret: bytes, authorization: str | None) -> str:
    """Who GitHub counts a request against, without holding the token: a keyed hash of the
    credential (`token X` and `Bearer X` are one), or ANONYMOUS."""
    if not authorization or not authorization.strip():
        return ANONYMOUS
    parts = authorization.split()
    credential = parts[-1] if len(parts) == 2 and parts[0].lower() in ("token", "bearer") \
        else authorization.strip()
    return hmac.new(secret, credential.encode("utf-8", "surrogateescape"),
                    hashlib.sha256).hexdigest()[:32]


class Turns(Generic[T]):
    """Whose request goes to GitHub next, for one token: at most `limit` at once; the rest
    wait, served round-robin across askers and in order within each asker."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.running = 0
        self._waiting: OrderedDict[str, deque[T]] = OrderedDict()
        self.waiting = 0

    def arrive(self, asker: str, ticket: T) -> bool:
        """True: go now (a slot is taken). False: the ticket waits for `leave` to hand it one."""
        if self.running < self.limit and not self.waiting:
            self.running += 1
            return True
        self._waiting.setdefault(asker, deque()).append(ticket)
        self.waiting += 1
        return False

    def leave(self) -> T | None:
        """A request is done. Returns the ticket its slot passes to, if one waits."""
        if not self._waiting:
            self.running -= 1
            return None
        asker, queue = next(iter(self._waiting.items()))
        ticket = queue.popleft()
        self.waiting -= 1
        if queue:
            self._waiting.move_to_end(asker)  # the next asker's turn
        else:
            del self._waiting[asker]
        return ticket

    def give_up(self, asker: str, ticket: T) -> None:
        """A waiting ticket no longer wants its turn (its caller went away)."""
        queue = self._waiting.get(asker)
        if queue is None or ticket not in queue:
            return
        queue.remove(ticket)
        self.waiting -= 1
        if not queue:
            del self._waiting[asker]

    @property
    def idle(self) -> bool:
        return self.running == 0 and not self.waiting


@dataclass
class _Pause:
    until: float
    refusal: ApiResponse  # GitHub's answer that began it, replayed meanwhile


class Pauses:
    """Tokens GitHub asked to wait, until when, and with which answer."""

    def __init__(self, max_paused: int = MAX_PAUSED) -> None:
        self.max_paused = max_paused
        self._paused: dict[str, _Pause] = {}

    def pause(self, key: str, until: float, refusal: ApiResponse, now: float) -> bool:
        """Hold `key` until `until`. True if this begins a pause (it was not paused)."""
        held = self._paused.get(key)
        if held is not None and held.until > now:
            if until > held.until:
                held.until, held.refusal = until, _kept(refusal)
            return False
        if len(self._paused) >= self.max_paused:
            self._paused = {k: p for k, p in self._paused.items() if p.until > now}
            if len(self._paused) >= self.max_paused:
                # Full of live pauses (a flood of refused client tokens): the shortest goes.
                del self._paused[min(self._paused, key=lambda k: self._paused[k].until)]
        self._paused[key] = _Pause(until, _kept(refusal))
        return True

    def until(self, key: str, now: float) -> float | None:
        held = self._paused.get(key)
        if held is None:
            return None
        if held.until <= now:
            del self._paused[key]
            return None
        return held.until

    def refusal(self, key: str, now: float) -> ApiResponse | None:
        """GitHub's refusal as it stands now (retry-after: the seconds left), or None."""
        until = self.until(key, now)
        if until is None:
            return None
        held = self._paused[key].refusal
        headers = dict(held.headers)
        headers["retry-after"] = str(max(1, math.ceil(until - now)))
        return ApiResponse(held.status, headers, held.body, "miss", paused_until=until)


def _kept(refusal: ApiResponse) -> ApiResponse:
    return ApiResponse(refusal.status, dict(refusal.headers), refusal.body[:MAX_REFUSAL_BYTES])


@dataclass
class PaidShare:
    """Refresh-ahead's share of the token's hourly limit for refreshes GitHub charges for: a
    token bucket filled at `share` x the hourly limit, holding `burst_s` seconds of it (at
    least one). A refresh takes a token before it is sent (`reserve`) and gives it back when
    GitHub did not charge (`settle`: a 304, a refusal, no answer), so what is paid stays
    within the bucket's fill even with several refreshes in flight."""

    share: float = REFRESH_SHARE
    burst_s: float = REFRESH_BURST_S
    tokens: float | None = None  # None: full (nothing spent yet)
    at: float | None = None  # when `tokens` was last brought up to date
    _cap: float = field(default=1.0, repr=False)

    def _fill(self, now: float, hourly: int | None) -> None:
        rate = self.share * (hourly or DEFAULT_HOURLY) / 3600.0
        self._cap = max(1.0, rate * self.burst_s)
        if self.tokens is None or self.at is None:
            self.tokens = self._cap
        else:
            self.tokens = min(self._cap, self.tokens + rate * max(0.0, now - self.at))
        self.at = now

    def reserve(self, now: float, hourly: int | None) -> bool:
        """Take a token for a refresh about to be sent; False: over budget, send nothing."""
        self._fill(now, hourly)
        assert self.tokens is not None
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

    def settle(self, paid: bool) -> None:
        """A reserved refresh is done: a paid one keeps its token spent."""
        if not paid and self.tokens is not None:
            self.tokens = min(self._cap, self.tokens + 1.0)

    def left(self, now: float, hourly: int | None) -> float:
        self._fill(now, hourly)
        assert self.tokens is not None
        return self.tokens


class _Ticket:
    __slots__ = ("event", "granted")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.granted = False


class Limits:
    """GitHub's budgets for one node's upstream requests (the trio edge of Turns and Pauses).

    Cache._upstream asks `refusal(key)` first (a paused token sends nothing), takes a
    `turn(key)` for the request, and `pause`s the token when GitHub's answer says stop."""

    def __init__(self, concurrency: int = DEFAULT_CONCURRENCY, counters: Counters | None = None,
                 clock: Callable[[], float] = time.time,
                 queue_timeout: float = QUEUE_TIMEOUT) -> None:
        self.concurrency = concurrency
        self.counters = counters if counters is not None else Counters()
        self.clock = clock
        self.queue_timeout = queue_timeout
        self._secret = secrets.token_bytes(32)  # never leaves the process
        self._turns: dict[str, Turns[_Ticket]] = {}
        self._pauses = Pauses()
        self.in_flight = 0
        self.queued = 0
        self.in_flight_max = 0

    def key(self, authorization: str | None) -> str:
        return credential_key(self._secret, authorization)

    # -- pauses -------------------------------------------------------------------------

    def paused_until(self, key: str) -> float | None:
        return self._pauses.until(key, self.clock())

    def refusal(self, key: str) -> ApiResponse | None:
        """GitHub's refusal to replay while `key` is paused (nothing may be sent), or None."""
        return self._pauses.refusal(key, self.clock())

    def pause(self, key: str, until: float, refusal: ApiResponse) -> bool:
        """Pause `key` until `until`; True if a pause begins (counted once)."""
        began = self._pauses.pause(key, until, refusal, self.clock())
        if began:
            self.counters.upstream_paused += 1
        return began

    # -- turns --------------------------------------------------------------------------

    @asynccontextmanager
    async def turn(self, key: str) -> AsyncIterator[ApiResponse | None]:
        """Hold one of `key`'s slots for the body of the `async with`: at once if one is
        free, else after the requests ahead of ours in the round-robin (at most
        `queue_timeout` seconds; then UpstreamError, as if GitHub were unreachable).

        Yields GitHub's refusal to replay if the token is paused (looked at before waiting
        and again once the turn came): then nothing may be sent. Else None."""
        refusal = self.refusal(key)
        if refusal is not None:
            yield refusal
            return
        turns = self._turns.get(key)
        if turns is None:
            turns = self._turns[key] = Turns(self.concurrency)
        asker = ASKER.get()
        ticket = _Ticket()
        if not turns.arrive(asker, ticket):
            await self._wait(turns, key, asker, ticket)
        self.in_flight += 1
        self.in_flight_max = max(self.in_flight_max, self.in_flight)
        try:
            yield self.refusal(key)  # a pause may have begun while we waited
        finally:
            self.in_flight -= 1
            self._leave(turns, key)

    async def _wait(self, turns: Turns[_Ticket], key: str, asker: str, ticket: _Ticket) -> None:
        self.counters.upstream_waited += 1
        self.queued += 1
        try:
            with trio.move_on_after(self.queue_timeout):
                await ticket.event.wait()
        except BaseException:
            # Cancelled (the client went away): a turn handed to us meanwhile passes on.
            if ticket.granted:
                self._leave(turns, key)
            else:
                turns.give_up(asker, ticket)
            raise
        finally:
            self.queued -= 1
        if not ticket.granted:
            turns.give_up(asker, ticket)
            raise UpstreamError(f"no turn to ask GitHub within {self.queue_timeout:.0f} s "
                                f"({self.concurrency} requests in flight per token)")

    def _leave(self, turns: Turns[_Ticket], key: str) -> None:
        following = turns.leave()
        if following is not None:
            following.granted = True
            following.event.set()
        elif turns.idle and self._turns.get(key) is turns:
            del self._turns[key]  # client credentials come and go: keep only live ones
