"""The libp2p side of a node: one host, and the sealed cache protocol in both directions.

- host.py: the host itself (Noise, Yamux) and throwaway hosts for one-off checks;
- peers.py: who we are connected to, the bootstrap servers we keep connected, liveness;
- asking.py: asking servers (rendezvous, one long-lived stream each, patience, failover);
- answering.py: answering peers (inbound streams and their limits, warm offers, dial-back);
- invalidating.py: fleet-wide drops (send ours, apply and pass on others', redeliver).

`Mesh` composes them and is what the rest of the node sees.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable

import multiaddr
import trio
from libp2p.crypto.keys import KeyPair
from libp2p.peer.id import ID

from ..cache import PeerAnswer
from ..config import BootstrapPeer
from ..crypto import Sealer
from ..invalidation import Drop
from ..models import ApiRequest
from ..protocol import PROTOCOL_ID, Message, ReplayGuard
from ..stats import Counters
from .answering import Offer, Responder, Serve
from .asking import (MAX_PEER_PATH, OPEN_STREAM_TIMEOUT, PEER_REQUEST_HEADERS, Asker,
                     rendezvous, rendezvous_order)
from .host import new_host_for, probe_peer, short
from .invalidating import Apply, Everything, Invalidating
from .peers import Bootstrap, ConnectionLog, OnServer

__all__ = ["Mesh", "MAX_PEER_PATH", "OPEN_STREAM_TIMEOUT", "PEER_REQUEST_HEADERS",
           "probe_peer", "rendezvous", "rendezvous_order", "short"]

log = logging.getLogger("p2pcache.mesh")


class Mesh:
    """The libp2p host of one node: it keeps its bootstrap servers connected, asks them
    (cache.Peers), and answers peers' requests with `serve` (cache, then GitHub)."""

    def __init__(self, key_pair: KeyPair, listen: multiaddr.Multiaddr,
                 bootstrap: tuple[BootstrapPeer, ...], sealer: Sealer, counters: Counters,
                 serve: Serve, peer_timeout: float, namespace: str,
                 peer_silence: float, offer: Offer | None = None,
                 offer_version: Callable[[], object] = lambda: 0,
                 on_server: OnServer | None = None, apply_drop: Apply | None = None,
                 revalidate_all: Everything | None = None, ttl: float = 60.0) -> None:
        self.host = new_host_for(key_pair)
        self.peer_id = self.host.get_id()
        self.listen = listen
        self.sealer = sealer
        self.counters = counters
        self.namespace = namespace
        self.guard = ReplayGuard()
        self.closing = False
        self.invalidating = Invalidating(self, apply_drop or (lambda drop: None),
                                         revalidate_all or (lambda at: None), ttl)
        self.on_server = on_server
        self.bootstrap = Bootstrap(self, bootstrap, peer_silence, self._server_joined)
        self.asker = Asker(self, peer_timeout)
        self.responder = Responder(self, serve, offer, offer_version)
        self.host.set_stream_handler(PROTOCOL_ID, self.responder.serve_stream)
        self.host.get_network().register_notifee(ConnectionLog())
        self._warned: set[tuple[str, str]] = set()
        self._nursery: trio.Nursery | None = None

    # -- lifecycle ----------------------------------------------------------------------

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Mesh]:
        async with self.host.run([self.listen]):
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                log.info("✓ P2P host started, listening on port %s",
                         self.listen.value_for_protocol("tcp"))
                log.info("Peer ID: %s", self.peer_id)
                peers = self.bootstrap.peers
                if peers:
                    log.info("✓ P2P bootstrap peers configured: %s",
                             ", ".join(p.multiaddr for p in peers))
                    log.info("Connecting to %d bootstrap peer(s)...", len(peers))
                    for peer in peers:
                        nursery.start_soon(self.bootstrap.maintain, peer)
                else:
                    log.info("⚠️  No bootstrap peers configured (set MCP_P2P_BOOTSTRAP_PEERS "
                             "secret)")
                try:
                    yield self
                finally:
                    self.closing = True
                    nursery.cancel_scope.cancel()

    async def _server_joined(self, server: ID) -> None:
        """What a bootstrap server missed goes first, then the node's own hook (the warm
        start, which must not bring back what we dropped)."""
        await self.invalidating.deliver_pending(server)
        if self.on_server is not None:
            await self.on_server(server)

    def start_soon(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """A task that lives as long as the mesh (a channel's reader, a warm start)."""
        assert self._nursery is not None, "the mesh is not running"
        self._nursery.start_soon(fn, *args)

    # -- what the node asks of the mesh ---------------------------------------------------

    def listen_addrs(self) -> list[str]:
        return [str(a) for a in self.host.get_addrs()]

    def observed_ips(self) -> list[str]:
        """Our addresses as peers see them (identify), e.g. a NAT's public side."""
        manager = getattr(self.host, "_observed_addr_manager", None)
        if manager is None:
            return []
        ips = []
        try:
            for addr in manager.addrs(min_observers=2):
                for proto in ("ip4", "ip6"):
                    try:
                        ips.append(addr.value_for_protocol(proto))
                    except Exception:
                        pass
        except Exception:  # private API of py-libp2p: never let it break publishing
            return []
        return [ip for ip in ips if ip]

    def connected_peers(self) -> list[ID]:
        return list(self.host.get_connected_peers())

    def available(self) -> bool:
        return bool(self.bootstrap.servers())

    def fleet_servers(self) -> int:
        """Bootstrap servers connected now that answer our fleet key (suspect or not)."""
        return self.bootstrap.sealed()

    async def ask(self, request: ApiRequest, key: str, etag: str | None,
                  not_before: float | None = None) -> PeerAnswer | None:
        return await self.asker.ask(request, key, etag, not_before)

    async def invalidate(self, drop: Drop) -> bool:
        """Tell the fleet (cache.Peers): True once every bootstrap server acknowledged."""
        return await self.invalidating.send(drop)

    async def warm(self, peer: ID, max_bytes: int,
                   deferred: Callable[[float], None] | None = None) -> Message | None:
        return await self.asker.warm(peer, max_bytes, deferred)

    async def ping(self, peer: ID) -> bool:
        return await self.asker.ping(peer)

    async def check_reachability(self, address: str) -> dict[str, object]:
        return await self.asker.check_reachability(address)

    def heard(self, peer: ID) -> None:
        """The peer sent us something: it lives."""
        self.bootstrap.heard(peer)

    # -- reporting ----------------------------------------------------------------------

    def warn_once(self, peer: ID | str, kind: str, text: str) -> None:
        """One line per peer and kind of trouble: a hostile peer cannot flood the log."""
        if (str(peer), kind) not in self._warned and len(self._warned) < 10_000:
            self._warned.add((str(peer), kind))
            log.warning("%s", text)

    def auth_failed(self, peer: ID) -> None:
        self.counters.auth_failures += 1
        self.warn_once(peer, "auth", f"⚠️  Peer {peer} sent a cache message that failed "
                       f"authentication: it holds a different fleet secret or namespace (ours: "
                       f"key {self.sealer.fingerprint}, namespace {self.namespace!r}). It gets "
                       "nothing from this node.")

    def bad_frame(self, peer: ID, exc: Exception) -> None:
        self.counters.bad_frames += 1
        self.warn_once(peer, "frame", f"⚠️  Peer {peer} sent an invalid cache frame ({exc}); "
                       "stream reset")
