"""Warm start: a runner node that joins the fleet takes its server's hot entries in one
answer, so a job arriving after others gets local hits from its first request instead of
one peer round trip per request.

The server offers what clients and peers asked of it recently (refresh.Asks holds each key
with the request that refetches it), fresh now, within the byte budget the runner asked for
(at most MAX_BYTES: what one frame inflates to, or one frame's body as it is, MAX_PLAIN_BYTES,
for a runner that takes no zlib), choosing the entries that save the most requests per byte,
asks / (size + ASK_COST), so one 700 KB list page does not crowd out thirty small entries.
It ranks by the entries' stored sizes and reads only the chosen bodies: an offer holds at
most MAX_BYTES of memory, however large the hot set. The runner takes each entry as it takes
any peer answer, validated where the bytes enter (the path through targets.parse, header
fields through headers.clean, the time GitHub vouched for it never in the future) and keeps
that time, so nothing is served older than the freshness window allows. A newer entry the
runner already holds is kept. docs/protocol.md §7.4 is the wire format:

    runner -> server   {"op": "warm", "key": "warm", "max_bytes": N, "encodings": ["zlib"]}
    server -> runner   {"entries": [{"path", "request_headers", "status", "headers",
                                      "fetched_at", "vouched", "size"}, ...]}
                       body: the bodies, in order

An entry a recent drop covers (invalidation.Drops) is not offered: the runner would serve a
state the fleet knows is gone.
"""

from __future__ import annotations

import math
import time

from . import headers as fields
from . import policy, targets
from .models import ApiRequest, ApiResponse, Entry
from .protocol import MAX_FRAME_BYTES, Message
from .invalidation import Drops
from .refresh import Asks
from .store import Store

MAX_BYTES = MAX_FRAME_BYTES  # what a frame's body inflates to at most (protocol.decode_body)
MAX_PLAIN_BYTES = MAX_FRAME_BYTES - 2 * 1024 * 1024  # a body sent as it is: one frame, with
# room for the metadata; also the most an offer may weigh compressed
MAX_ENTRIES = 2000
DEFAULT_BYTES = MAX_BYTES  # what a runner asks for (--warm-start)
MAX_PATH = 8 * 1024
ASK_COST = 2048  # bytes a request is worth when ranking (its headers and round trip)


class WarmStartError(ValueError):
    """An offer that does not hold together: nothing of it is taken."""


class OfferBudget:
    """How many warm offers a server makes, for all peers together (peer IDs cost nothing
    to make, so a per-peer bound alone bounds nothing): offers cost what they weigh. A
    bucket holds `burst` full offers (MAX_BYTES each) and refills one every `interval`
    seconds. An offer built for the asker is charged the bytes it read (at least `floor` of
    a full one: reading and compressing them is the server's work), estimated from the last
    build before it is built and settled once its size is known; an offer given again from
    the Shelf is charged the bytes it sends. So 30 fresh IDs asking for a full hot set in
    10 s get at most 3 builds, and the bytes sent to them all stay within the bucket, while
    a small hot set (a fleet's usual hundred entries) is offered to every joining runner.
    One offer per peer a minute too. Times are the caller's clock; pure."""

    def __init__(self, per_peer: float, burst: float, interval: float,
                 floor: float = 1 / 64, full: int = MAX_BYTES) -> None:
        self.per_peer, self.burst, self.interval = per_peer, burst, interval
        self.floor, self.full = floor, full
        self._tokens = float(burst)
        self._filled_at: float | None = None
        self._estimate = 1.0  # the last offer's weight: the next one's charge before it is built
        self._last: dict[str, float] = {}

    def admit(self, peer: str, now: float,
              sends: int | None = None) -> tuple[float, float]:
        """(0, charged) if an offer may be made now, else (seconds to wait, 0). `sends`:
        the bytes of an offer already built (Shelf), charged as they are; else one to be
        built, charged the last build's weight until it is settled."""
        if self._filled_at is not None:
            self._tokens = min(self.burst,
                               self._tokens + (now - self._filled_at) / self.interval)
        self._filled_at = now
        self._last = {p: t for p, t in self._last.items() if now - t < self.per_peer}
        last = self._last.get(peer)
        if last is not None:
            return self.per_peer - (now - last), 0.0
        charge = self._estimate if sends is None else self.weight(sends)
        if self._tokens < charge:
            return (charge - self._tokens) * self.interval, 0.0
        self._tokens -= charge
        self._last[peer] = now
        return 0.0, charge

    def settle(self, charged: float, size: int) -> None:
        """The offer built weighed `size` bytes: charge the difference, remember it as the
        next build's estimate. The bucket may go below empty: the next offers then wait."""
        weight = self.weight(size)
        self._tokens -= weight - charged
        self._estimate = weight

    def weight(self, size: int) -> float:
        return max(self.floor, min(1.0, size / self.full))


def ask_key(budget: object, encodings: object) -> tuple[object, tuple[str, ...] | None]:
    """What makes two warm asks the same to the Shelf: the byte budget and the encodings
    named (a peer's list: only its strings count, the first 4)."""
    named = tuple(e for e in encodings if isinstance(e, str))[:4] \
        if isinstance(encodings, list) else None
    return budget, named


class Shelf:
    """The last warm offer as sent, kept `keep` seconds, so runners joining in a burst (a
    queue of jobs, a matrix) share one build: the server reads and compresses the hot set
    once, and each later joiner costs it only the bytes it is sent. Given again only for
    the same ask (byte budget, encodings) and while `version` holds (the node's: no drop,
    no entry stored anew since), so it never holds a state the fleet knows is gone.
    Its entries carry the times GitHub vouched for them: the runner judges their age as it
    would a new build's, and revalidates what went stale meanwhile. Pure; the caller's
    clock."""

    def __init__(self, keep: float) -> None:
        self.keep = keep
        self._held: tuple[object, object, float, Message] | None = None

    def get(self, ask: object, version: object, now: float) -> Message | None:
        if self._held is None:
            return None
        held_ask, held_version, built_at, answer = self._held
        if held_ask != ask or held_version != version or not 0 <= now - built_at < self.keep:
            return None
        return answer

    def put(self, ask: object, version: object, now: float, answer: Message) -> None:
        self._held = (ask, version, now, answer)


def candidates(asks: Asks, now: float, ttl: float) -> list[tuple[str, ApiRequest, int]]:
    """The keys asked for recently, with the request that refetches each and how often it
    was asked. Taken on the event loop, where `asks` changes; the store is read afterwards,
    in a thread."""
    return [(key, hot.request, hot.asks) for key, hot in asks.recent(now, ttl)]


def offer(chosen: list[tuple[str, ApiRequest, int]], store: Store, now: float, ttl: float,
          max_bytes: int, drops: Drops | None = None) -> Message:
    """The fresh entries among `chosen` that save the most requests within `max_bytes`;
    `drops` (a snapshot: this runs in a thread) rules out what a drop covers."""
    max_bytes = max(0, min(max_bytes, MAX_BYTES))
    ranked = []
    for key, request, asks in chosen[:4 * MAX_ENTRIES]:
        head = store.head(key)
        if head is not None and _fresh(head, now, ttl, drops):
            ranked.append((asks / (head.size + ASK_COST), key, request, head.size))
        # else gone, or stale: the runner's own ask will revalidate it
    ranked.sort(key=lambda item: -item[0])
    entries: list[dict[str, object]] = []
    bodies: list[bytes] = []
    size = 0
    for _, key, request, stored_size in ranked:
        if len(entries) >= MAX_ENTRIES:
            break
        if size + stored_size > max_bytes:
            continue  # a smaller one may still fit
        entry = store.get(key)  # changed meanwhile? judged again
        if entry is None or not _fresh(entry, now, ttl, drops) \
                or size + entry.size > max_bytes:
            continue
        size += entry.size
        item = {"path": str(request.target), "request_headers": request.headers,
                "status": entry.status, "headers": entry.headers,
                "fetched_at": entry.fetched_at, "size": len(entry.body)}
        if entry.vouched is not None:
            item["vouched"] = entry.vouched
        entries.append(item)
        bodies.append(entry.body)
    return Message({"entries": entries}, b"".join(bodies))


def _fresh(entry: Entry, now: float, ttl: float, drops: Drops | None) -> bool:
    if drops is not None and drops.dropped_since(entry.path, entry.asked_at or 0.0):
        return False
    return policy.decide(entry, now, ttl) is policy.Action.SERVE


def take(message: Message, max_bytes: int,
         now: float | None = None) -> list[tuple[ApiRequest, ApiResponse]]:
    """The requests and answers of an offer, each validated as a peer answer is.
    WarmStartError if the offer as a whole is malformed or larger than we asked for."""
    now = time.time() if now is None else now
    raw = message.meta.get("entries")
    if not isinstance(raw, list) or len(raw) > MAX_ENTRIES:
        raise WarmStartError(f"entries must be a list of at most {MAX_ENTRIES}")
    if len(message.body) > max_bytes:
        raise WarmStartError(f"{len(message.body)} bytes of bodies, {max_bytes} asked for")
    sizes = [item.get("size") if isinstance(item, dict) else None for item in raw]
    if not all(type(s) is int and s >= 0 for s in sizes) or sum(sizes) != len(message.body):
        raise WarmStartError("entry sizes do not add up to the bodies sent")
    taken: list[tuple[ApiRequest, ApiResponse]] = []
    offset = 0
    for item, size in zip(raw, sizes):
        body = message.body[offset:offset + size]
        offset += size
        pair = _entry(item, body, now)
        if pair is not None:
            taken.append(pair)
    return taken


def _entry(item: dict, body: bytes, now: float) -> tuple[ApiRequest, ApiResponse] | None:
    """One offered entry, or None if any field of it is unusable (the rest still count)."""
    try:
        path = item["path"]
        if not isinstance(path, str) or len(path) > MAX_PATH:
            return None
        target = targets.parse(path)
        asked = item.get("request_headers") or {}
        given = item["headers"]
        if not isinstance(asked, dict) or not isinstance(given, dict):
            return None
        request_headers = {name: value for name, value in fields.clean(
            (str(k), str(v)) for k, v in asked.items()).items() if name in policy.VARY_HEADERS}
        status = item["status"]
        fetched_at = float(item["fetched_at"])
    except (KeyError, TypeError, ValueError):
        return None
    if type(status) is not int or not math.isfinite(fetched_at):
        return None
    vouched = item.get("vouched")
    if type(vouched) not in (int, float) or not math.isfinite(vouched):
        vouched = None  # unknown: revalidated under any floor
    response = ApiResponse(status, fields.clean((str(k), str(v)) for k, v in given.items()),
                           body, "peer", fetched_at=min(fetched_at, now), vouched=vouched)
    return ApiRequest("GET", target, request_headers), response
