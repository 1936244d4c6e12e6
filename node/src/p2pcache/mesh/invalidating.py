"""Fleet-wide drops on the mesh: the `invalidate` message (docs/protocol.md §7.5).

A node whose client wrote sends the drop to every connected peer (a runner's are its
servers) and waits, briefly, for their acknowledgements. A peer that gets it straight from
its origin passes it on to every other connected peer (a server tells its runners), so the
fleet hears of a write in two hops. A node applies a message once (by id), in the order its
stream carried it (before any later request on that stream is read), and within bounds a
peer cannot push past (invalidation.Admission). A server that did not acknowledge gets the
message again when it connects again; a node that was disconnected revalidates what it
held before it reconnected (the node's `everything` hook).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Awaitable, Callable

import trio
from libp2p.peer.id import ID

from ..invalidation import (FILL_BOUND_S, Admission, Drop, DropRefused, Seen,
                            parse_peer_drop, valid_id, valid_peer_id)
from .host import reason, short

if TYPE_CHECKING:
    from . import Mesh

log = logging.getLogger("p2pcache.mesh")

OP = "invalidate"
ACK_TIMEOUT = 2.0  # seconds the writer waits for its servers' acknowledgements
FORWARD_TIMEOUT = 10.0  # seconds a server gives one runner to acknowledge a forwarded drop
FORWARDS_AT_ONCE = 32  # forwarded messages in flight, all peers together
MAX_PENDING = 256  # messages kept for servers that did not acknowledge them

Apply = Callable[[Drop], None]  # the node's: makes what the drop covers unusable, now
Everything = Callable[[float], None]  # the node's: all held before then is to be revalidated


@dataclass
class _Pending:
    meta: dict[str, object]
    made: float  # time.monotonic()
    acked: set[ID] = field(default_factory=set)


class Invalidating:
    """Our side of every `invalidate` message: sending ours, applying and passing on
    others', and delivering what a server missed once it is back."""

    def __init__(self, mesh: Mesh, apply: Apply, everything: Everything, ttl: float) -> None:
        self.mesh = mesh
        self.apply = apply
        self.everything = everything
        self.keep_for = ttl + FILL_BOUND_S  # after this, the fleet revalidates by age anyway
        self.admission = Admission()
        self.seen = Seen()
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        self._forwards = trio.Semaphore(FORWARDS_AT_ONCE)
        self._was_connected: set[ID] = set()

    # -- sending ours ------------------------------------------------------------------------

    async def send(self, drop: Drop) -> bool:
        """Tell every connected peer, waiting (up to ACK_TIMEOUT) only for our bootstrap
        servers, the ones our next reads go to: True if every one acknowledged. Other peers
        (a server's runners) are told in the background."""
        origin = str(self.mesh.peer_id)
        metas = [{"op": OP, "key": OP, "id": uuid.uuid4().hex, "origin": origin,
                  **part.as_meta()} for part in drop.chunks()]
        for meta in metas:
            self.seen.first(str(meta["id"]), time.monotonic())  # our own, if it comes back
            self._remember(meta)
        servers = []
        for peer in self.mesh.connected_peers():
            if peer in self.mesh.bootstrap.ids:
                servers.append(peer)
            else:
                for meta in metas:
                    self.mesh.start_soon(self._forward_to, peer, meta)
        acked: set[ID] = set()
        with trio.move_on_after(ACK_TIMEOUT):
            async with trio.open_nursery() as nursery:
                for peer in servers:
                    nursery.start_soon(self._send_all, peer, metas, acked)
        for meta in metas:
            pending = self._pending.get(str(meta["id"]))
            if pending is not None:
                pending.acked |= acked
                if self.mesh.bootstrap.ids <= pending.acked:
                    del self._pending[str(meta["id"])]
        return self.mesh.bootstrap.ids <= acked

    async def _send_all(self, peer: ID, metas: list[dict[str, object]], acked: set[ID]) -> None:
        for meta in metas:
            if not await self._call(peer, meta, ACK_TIMEOUT):
                return
        acked.add(peer)

    async def _call(self, peer: ID, meta: dict[str, object], patience: float) -> bool:
        channel = await self.mesh.asker._channel(peer)
        if channel is None:
            return False
        self.mesh.counters.invalidations_sent += 1
        answer = await channel.call(meta, OP, patience)
        return answer is not None and "error" not in answer.meta

    def _remember(self, meta: dict[str, object]) -> None:
        if not self.mesh.bootstrap.ids:
            return  # a server has no one to deliver to later
        self._pending[str(meta["id"])] = _Pending(meta, time.monotonic())
        while len(self._pending) > MAX_PENDING:
            self._pending.popitem(last=False)

    # -- a server (re)connects ---------------------------------------------------------------------

    def connected(self, server: ID, dialled_at: float) -> None:
        """A bootstrap server was just connected (we began dialling it at `dialled_at`, wall
        clock). If we had been connected to it before (we may have missed what it passed on
        meanwhile), or to no server at all (what we fetched meanwhile never heard of anyone's
        writes), what we held before the dial is to be revalidated before use: free 304s,
        through the fleet."""
        others = [p for p in self.mesh.bootstrap.servers() if p != server]
        if server in self._was_connected or not others:
            self.everything(dialled_at)
        self._was_connected.add(server)

    async def deliver_pending(self, server: ID) -> None:
        """What the server did not acknowledge (it was down, or we were), before anything
        else is asked of it (a warm start must not bring back what we dropped)."""
        now = time.monotonic()
        for message_id, pending in list(self._pending.items()):
            if now - pending.made > self.keep_for:
                del self._pending[message_id]
                continue
            for attempt in range(3):  # a stream that broke: a fresh one, while connected
                if server in pending.acked or server not in self.mesh.bootstrap.servers():
                    break
                if await self._call(server, pending.meta, ACK_TIMEOUT):
                    pending.acked.add(server)
                else:
                    await trio.sleep(0.2 * (attempt + 1))
            if self.mesh.bootstrap.ids <= pending.acked:
                self._pending.pop(message_id, None)

    # -- receiving others' --------------------------------------------------------------------

    def receive(self, sender: ID, meta: dict[str, object]) -> tuple[dict[str, object],
                                                                    Callable[[], Awaitable[None]]
                                                                    | None]:
        """Apply a peer's drop now (the caller reads nothing more of that stream until this
        returns); the answer, and what to do once it is sent: pass the drop on (after, so
        that the writer, waiting for our answer, does not wait for our runners)."""
        counters = self.mesh.counters
        counters.invalidations_received += 1
        try:
            message_id, origin = meta.get("id"), meta.get("origin")
            if not valid_id(message_id):
                raise DropRefused("id must be 32 lower-case hex digits")
            if not valid_peer_id(origin):
                raise DropRefused("origin must be a peer ID")
            drop = parse_peer_drop(meta)
        except DropRefused as exc:
            counters.invalidations_refused += 1
            self.mesh.warn_once(sender, "invalidate-bad",
                                f"⚠️  Peer {sender} sent an invalid invalidation ({exc})")
            return {"error": f"bad request: {exc}"}, None
        now = time.monotonic()
        if not self.seen.first(str(message_id), now):
            return {"applied": False, "duplicate": True}, None
        refusal = self.admission.admit(str(sender), len(drop), now)
        if refusal is not None:
            counters.invalidations_refused += 1
            self.mesh.warn_once(sender, "invalidate-limit",
                                f"⚠️  Peer {sender} went over a resource limit ({refusal}); "
                                "its invalidations are refused while it does")
            return {"error": f"rate limited: {refusal}"}, None
        self.apply(drop)
        counters.invalidations_applied += 1
        if origin != str(sender):
            return {"applied": True}, None
        forwarded = dict(meta)  # straight from the writer: tell everyone else
        return {"applied": True}, lambda: self._forward(forwarded, sender)

    async def _forward(self, meta: dict[str, object], sender: ID) -> None:
        peers = [p for p in self.mesh.connected_peers() if p != sender]
        async with trio.open_nursery() as nursery:
            for peer in peers:
                nursery.start_soon(self._forward_to, peer, meta)

    async def _forward_to(self, peer: ID, meta: dict[str, object]) -> None:
        async with self._forwards:
            for attempt in range(2):  # once more on a fresh stream if this one broke
                with trio.move_on_after(FORWARD_TIMEOUT):
                    try:
                        if await self._call(peer, meta, FORWARD_TIMEOUT):
                            return
                    except Exception as exc:  # never let one peer end the others' forwards
                        log.debug("forwarding an invalidation to %s failed: %s", short(peer),
                                  reason(exc))
                if peer not in self.mesh.connected_peers():
                    return  # gone: it revalidates what it holds when it reconnects
