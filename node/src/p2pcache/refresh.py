"""Refresh-ahead: entries that clients keep asking for are revalidated in the background
shortly before they go stale, so the next ask after the freshness window is a hit.

Asks are noted in memory (bounded; the least recently asked key is forgotten first) with
the request that refetches the entry: GET, the canonical Target and the headers that select
the representation, never a client's credentials. What is due is policy.refresh_due's
choice; the refresh itself is Cache.refresh, the key's single flight. Bounds: a few in
flight, a budget per minute, a pause whenever GitHub refuses or fails, and a share of the
token's hourly limit for refreshes GitHub charges for (limits.PaidShare: 304s are free).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Callable

import trio

from . import limits, policy
from .cache import Cache, Refreshed
from .models import ApiRequest, ApiResponse

log = logging.getLogger(__name__)

MAX_KEYS = 10_000
MAX_KEY_CHARS = 2048  # longer keys (huge targets or Accept values) are never tracked
MAX_IN_FLIGHT = 4
PER_MINUTE = 120


@dataclass
class _Hot:
    request: ApiRequest  # what refetches the entry
    asks: int
    last_asked: float
    fetched_at: float  # as last seen: in an answer, or after a refresh
    skipped_for: float | None = None  # the entry version whose held refresh was counted


class Asks:
    """Which keys clients ask for, how often and how lately: in memory, bounded."""

    def __init__(self, max_keys: int = MAX_KEYS) -> None:
        self.max_keys = max_keys
        self._hot: OrderedDict[str, _Hot] = OrderedDict()

    def __len__(self) -> int:
        return len(self._hot)

    def note(self, request: ApiRequest, response: ApiResponse, now: float) -> None:
        """One client (or peer) ask, answered from a cached entry (`fetched_at` set)."""
        if response.fetched_at is None:
            return  # not cached (an error, a 404): nothing to refresh
        key = policy.cache_key(request)
        if len(key) > MAX_KEY_CHARS:
            return
        hot = self._hot.pop(key, None)
        if hot is None:
            refetch = ApiRequest("GET", request.target, {
                name: request.headers[name] for name in policy.VARY_HEADERS
                if name in request.headers})
            hot = _Hot(refetch, 0, now, response.fetched_at)
        hot.asks += 1
        hot.last_asked = now
        hot.fetched_at = max(hot.fetched_at, response.fetched_at)
        self._hot[key] = hot
        while len(self._hot) > self.max_keys:
            self._hot.popitem(last=False)

    def due(self, now: float, ttl: float) -> list[tuple[str, _Hot]]:
        """Keys to refresh now, the closest to going stale first."""
        due = [(key, hot) for key, hot in self._hot.items()
               if policy.refresh_due(hot.asks, hot.last_asked, hot.fetched_at, now, ttl)]
        return sorted(due, key=lambda item: item[1].fetched_at)

    def recent(self, now: float, ttl: float) -> list[tuple[str, _Hot]]:
        """Keys asked for recently, the most asked first, then the most recently asked."""
        recent = [(key, hot) for key, hot in self._hot.items()
                  if policy.recently_asked(hot.last_asked, now, ttl)]
        return sorted(recent, key=lambda item: (-item[1].asks, -item[1].last_asked))

    def refreshed(self, key: str, fetched_at: float | None) -> None:
        hot = self._hot.get(key)
        if hot is None:
            return
        if fetched_at is None:
            del self._hot[key]  # the entry is gone: its next ask starts afresh
        else:
            hot.fetched_at = max(hot.fetched_at, fetched_at)


class Refresher:
    """The refresh loop of one node; runs in the node's nursery."""

    def __init__(self, cache: Cache, ttl: float, *, max_in_flight: int = MAX_IN_FLIGHT,
                 per_minute: int = PER_MINUTE, clock: Callable[[], float] = time.time,
                 asks: Asks | None = None, paid: limits.PaidShare | None = None) -> None:
        self.cache = cache
        self.ttl = ttl
        self.max_in_flight = max_in_flight
        self.per_minute = per_minute
        self.clock = clock
        self.asks = asks if asks is not None else Asks()  # an empty Asks is falsy
        self._refreshing: set[str] = set()
        self._sent: deque[float] = deque()  # start times within the last minute
        self._paused_until = 0.0
        self.paid = paid if paid is not None else limits.PaidShare()
        self._slot_freed = trio.Event()
        # Often enough to act within the lead, rarely enough to cost nothing when idle.
        self.tick = max(0.05, min(1.0, policy.refresh_lead(ttl) / 4))

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                self._start_due(nursery)
                # Look again a tick later, or as soon as a slot frees: a cold start's hot
                # set falls due all at once, and a batch per tick could not keep it fresh.
                self._slot_freed = trio.Event()
                with trio.move_on_after(self.tick):
                    await self._slot_freed.wait()

    def _start_due(self, nursery: trio.Nursery) -> None:
        now = self.clock()
        while self._sent and now - self._sent[0] >= 60:
            self._sent.popleft()
        for key, hot in self.asks.due(now, self.ttl):
            if key in self._refreshing:
                continue
            if len(self._refreshing) >= self.max_in_flight:
                return  # the rest wait for a free slot, a tick away
            if now < self._paused_until or len(self._sent) >= self.per_minute:
                self._held(hot, "refreshes_skipped")
                continue
            if not self.paid.reserve(now, self.cache.rate_limit.limit):
                self._held(hot, "refreshes_over_budget")
                continue
            self._refreshing.add(key)
            self._sent.append(now)
            nursery.start_soon(self._refresh, key, hot.request)

    def _held(self, hot: _Hot, counter: str) -> None:
        if hot.skipped_for != hot.fetched_at:  # counted once per entry version
            hot.skipped_for = hot.fetched_at
            setattr(self.cache.counters, counter, getattr(self.cache.counters, counter) + 1)

    async def _refresh(self, key: str, request: ApiRequest) -> None:
        limits.ASKER.set("refresh-ahead")  # its turns to GitHub are its own (limits.Turns)
        result = Refreshed(None, paid=True)  # if it failed unexpectedly: assume it was paid
        try:
            result = await self.cache.refresh(request)
        except Exception:  # a background task must never take the node down with it
            log.exception("Refresh-ahead failed unexpectedly; pausing it")
            result = Refreshed(None, self.clock() + policy.REFRESH_PAUSE_S, paid=True)
        finally:
            self.paid.settle(result.paid)
            self._refreshing.discard(key)
            self._slot_freed.set()
        self.asks.refreshed(key, result.fetched_at)
        if result.pause_until > self._paused_until:
            now = self.clock()
            if self._paused_until <= now:
                log.warning("Refresh-ahead paused for %.0f s: GitHub refused or failed",
                            result.pause_until - now)
            self._paused_until = result.pause_until
