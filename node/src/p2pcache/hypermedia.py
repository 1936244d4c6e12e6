"""What a client that talks to the node by its own address reads: GitHub's answer with its
hypermedia URLs pointing back at the node (policy.rewrite_hypermedia), so following them
stays on the cache.

That rewrite is the dearest part of a local hit: a 670 KB list page of pulls holds ~6,900
URLs, ~3 ms of the node's one event-loop thread, where the rest of the hit costs ~1 ms. So
rewritten bodies are kept, least recently used out first, within a byte bound, under the
body they came from and the base they point at; a held one is given only for a body equal
to its original byte for byte (never another body's rewrite, whatever a peer or GitHub
sends). And a runner rewrites what its warm start brought, for the address it gives its job
(P2P_CACHE_API_URL), before the job asks: the job's first reads cost what its later ones do
(bench/fleet.py, the sequential run).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Iterable

from . import policy

MAX_BYTES = 64 * 1024 * 1024  # originals and rewrites held, together
MIN_BODY = 16 * 1024  # smaller bodies rewrite in microseconds: not worth holding


class Rewrites:
    """Bodies as a client of `client_base` reads them, held within `max_bytes`. Safe to use
    from the event loop and from a worker thread at once."""

    def __init__(self, upstream_base: str, max_bytes: int = MAX_BYTES) -> None:
        self.upstream_base = upstream_base
        self.max_bytes = max_bytes
        self._held: OrderedDict[tuple[str, int, bytes, bytes], tuple[bytes, bytes]] = \
            OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def body(self, body: bytes, client_base: str) -> bytes:
        """`body` (a JSON answer of GitHub's) with its hypermedia pointing at `client_base`."""
        if len(body) < MIN_BODY:
            return policy.rewrite_hypermedia(body, self.upstream_base, client_base)
        key = (client_base, len(body), body[:64], body[-64:])  # then compared whole
        with self._lock:
            held = self._held.get(key)
            if held is not None and held[0] == body:
                self._held.move_to_end(key)
                return held[1]
        rewritten = policy.rewrite_hypermedia(body, self.upstream_base, client_base)
        if rewritten is not body:  # (no URL of GitHub's in it: nothing worth holding)
            self._keep(key, body, rewritten)
        return rewritten

    def prepare(self, bodies: Iterable[bytes], client_base: str) -> None:
        """Rewrite these now (blocking: a worker thread's job), so a client's first read of
        them is a lookup."""
        for body in bodies:
            self.body(body, client_base)

    def _keep(self, key: tuple[str, int, bytes, bytes], body: bytes, rewritten: bytes) -> None:
        size = len(body) + len(rewritten)
        if size > self.max_bytes // 4:
            return
        with self._lock:
            old = self._held.pop(key, None)
            if old is not None:
                self._bytes -= len(old[0]) + len(old[1])
            self._held[key] = (body, rewritten)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (original, out) = self._held.popitem(last=False)
                self._bytes -= len(original) + len(out)
