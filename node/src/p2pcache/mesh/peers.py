"""Who we are connected to: the connection log, the bootstrap peers we keep connected
(dial, watch, redial with backoff), and whether a connected server still answers.
"""

from __future__ import annotations

import logging
import random
import time
from typing import TYPE_CHECKING, Awaitable, Callable

import multiaddr
import trio
from libp2p.abc import INetConn, INetStream, INetwork, INotifee
from libp2p.host.ping import PingService
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr

from ..config import BootstrapPeer
from ..policy import Liveness
from .host import reason, short

if TYPE_CHECKING:
    from . import Mesh

log = logging.getLogger("p2pcache.mesh")

CONNECT_TIMEOUT = 10.0
MAX_BACKOFF = 30.0
WATCH_TICK = 0.5  # seconds between looks at a connected bootstrap peer (policy.Liveness)
SEAL_RECHECK = 30.0  # seconds between sealed pings to a connected peer that refused our key

OnServer = Callable[[ID], Awaitable[None]]


class ConnectionLog(INotifee):
    """The setup guide's '✓ Connected to peer: <id>' once per peer, not per connection."""

    def __init__(self) -> None:
        self.peers: set[str] = set()

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        peer = str(conn.muxed_conn.peer_id)
        if peer not in self.peers:
            self.peers.add(peer)
            log.info("✓ Connected to peer: %s", peer)

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        peer_id = conn.muxed_conn.peer_id
        if not network.get_connections(peer_id) and str(peer_id) in self.peers:
            self.peers.discard(str(peer_id))
            log.info("Disconnected from peer: %s", peer_id)

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        return None

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        return None

    async def listen(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        return None

    async def listen_close(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        return None


class Bootstrap:
    """The servers this node keeps connected (its bootstrap peers), and their liveness."""

    def __init__(self, mesh: Mesh, peers: tuple[BootstrapPeer, ...], silence: float,
                 on_server: OnServer | None) -> None:
        self.mesh = mesh
        self.peers = peers
        self.silence = silence
        self.on_server = on_server  # runs once each time a bootstrap peer is connected
        self.ids = {ID.from_base58(p.peer_id) for p in peers}
        self._liveness: dict[ID, Liveness] = {}  # connected bootstrap peers
        self._wake: dict[ID, trio.Event] = {}  # a watcher's nap, cut short by a suspicion
        # Servers that answered a message sealed with our fleet key since they connected,
        # and those that did not (another secret or namespace, or too busy): only the first
        # are asked.
        self._sealed: set[ID] = set()
        self._unsealed: set[ID] = set()

    def servers(self) -> list[ID]:
        """The bootstrap peers connected now and worth asking: they answer our sealed
        messages, and are not suspect."""
        connected = set(self.mesh.host.get_connected_peers())
        return [p for p in self.ids if p in connected and p in self._sealed
                and (p not in self._liveness or self._liveness[p].usable)]

    def heard(self, peer: ID) -> None:
        """The peer sent us something: it lives."""
        liveness = self._liveness.get(peer)
        if liveness is not None:
            was_usable = liveness.usable
            liveness.hear(trio.current_time())
            self._answers_again(peer, liveness, was_usable)

    @staticmethod
    def _answers_again(peer: ID, liveness: Liveness, was_usable: bool) -> None:
        if liveness.usable and not was_usable:
            log.info("✓ Bootstrap peer %s answers again: asking it again", short(peer))

    def suspect(self, peer: ID) -> None:
        """An ask to `peer` waited out the peer timeout: skip it until it speaks, and ping
        it now (its pong, or any late answer, clears it)."""
        liveness = self._liveness.get(peer)
        if liveness is None or not liveness.usable:
            return
        liveness.suspect(trio.current_time())
        self.mesh.counters.peer_suspicions += 1
        log.warning("⚠️  Bootstrap peer %s is silent (no answer within %.1f s): asking around "
                    "it until it answers a ping", short(peer), self.mesh.asker.peer_timeout)
        wake = self._wake.get(peer)
        if wake is not None:
            wake.set()

    async def maintain(self, peer: BootstrapPeer) -> None:
        """Keep one bootstrap peer connected: dial, watch, and redial with backoff."""
        host = self.mesh.host
        info = info_from_p2p_addr(multiaddr.Multiaddr(peer.multiaddr))
        backoff = 1.0
        was_connected = False
        pinger = PingService(host)
        while True:
            if info.peer_id in host.get_connected_peers():
                if not was_connected:
                    # Connected by another dial (a stream opened meanwhile dials a peer it
                    # knows): a connection all the same, and what comes with one.
                    await self._greet(info.peer_id, peer, time.time())
                    backoff = 1.0
                was_connected = True
                await self._watch(pinger, info.peer_id)
                continue
            if was_connected:
                log.warning("⚠️  Lost connection to bootstrap peer %s; reconnecting",
                            peer.multiaddr)
                was_connected = False
                self._sealed.discard(info.peer_id)  # asked again once it answers again
            # py-libp2p refuses to redial a peer that failed recently; our own backoff
            # decides when a bootstrap peer is worth another try.
            network = host.get_network()
            if hasattr(network, "unblock_peer"):
                network.unblock_peer(info.peer_id)
            dialled_at = time.time()  # what we held before this, we held while apart
            try:
                with trio.fail_after(CONNECT_TIMEOUT):
                    await host.connect(info)
            except trio.TooSlowError:
                log.warning("⚠️  Timeout connecting to bootstrap peer %s (retrying in %.0f s)",
                            peer.multiaddr, backoff)
            except Exception as exc:  # libp2p raises many types (and groups) on dial failure
                log.warning("⚠️  Could not connect to bootstrap peer %s: %s (retrying in %.0f s)",
                            peer.multiaddr, reason(exc), backoff)
            else:
                was_connected = True
                await self._greet(info.peer_id, peer, dialled_at)
                backoff = 1.0
                continue
            await trio.sleep(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, MAX_BACKOFF)

    async def _greet(self, peer_id: ID, peer: BootstrapPeer, dialled_at: float) -> bool:
        """A connection is not yet a fleet: a server is ours once it answers a message sealed
        with our key. Until then it is not asked, and the user is told why (the guide's
        '✓ Connected to bootstrap peer' means it answered). We began dialling it at
        `dialled_at` (wall clock): what we held before, we held while apart."""
        if not await self.mesh.asker.ping(peer_id):
            if peer_id not in self._unsealed:
                self._unsealed.add(peer_id)
                sealer = self.mesh.sealer
                log.warning("⚠️  Bootstrap peer %s is connected but did not answer a message "
                            "sealed with our fleet key within %.0f s: it holds another fleet "
                            "secret (P2P_CACHE_SECRET, else the token) or namespace (ours: key "
                            "fingerprint %s, namespace %r), or it is overloaded. Its cache is "
                            "not used until it answers (checked again every %.0f s); "
                            "`p2pcache doctor` checks both ends.", peer.multiaddr,
                            self.mesh.asker.peer_timeout, sealer.fingerprint,
                            self.mesh.namespace, SEAL_RECHECK)
            return False
        self._unsealed.discard(peer_id)
        self.mesh.invalidating.connected(peer_id, dialled_at)  # before anything is served
        self._sealed.add(peer_id)
        log.info("✓ Connected to bootstrap peer %s", peer.multiaddr)
        if self.on_server is not None:
            self.mesh.start_soon(self.on_server, peer_id)
        return True

    def unsealed(self) -> int:
        """Connected bootstrap peers that do not answer our sealed messages."""
        connected = set(self.mesh.host.get_connected_peers())
        return sum(1 for p in self._unsealed if p in connected)

    def sealed(self) -> int:
        """Connected bootstrap peers that answered our sealed messages: the fleet's servers."""
        connected = set(self.mesh.host.get_connected_peers())
        return sum(1 for p in self._sealed if p in connected)

    async def _watch(self, pinger: PingService, peer: ID) -> None:
        """Until `peer` disconnects. A server whose machine vanished sends no reset: without
        this, every ask would wait out the peer timeout. One that stays silent while a ping
        waits is disconnected, so asks go to the next server (or GitHub) until the redial
        succeeds; one that is only slow keeps answering something, and stays."""
        host = self.mesh.host
        liveness = Liveness(self.silence, heard=trio.current_time())
        self._liveness[peer] = liveness
        recheck_at = trio.current_time() + SEAL_RECHECK
        try:
            async with trio.open_nursery() as nursery:
                while peer in host.get_connected_peers():
                    now = trio.current_time()
                    if liveness.dead(now):
                        log.warning("⚠️  Bootstrap peer %s stopped answering pings; "
                                    "disconnecting (silent for %.0f s)", peer,
                                    liveness.silent_for(now))
                        with trio.move_on_after(5):
                            try:
                                await host.disconnect(peer)
                            except Exception:
                                pass
                        break
                    if liveness.ping_due(now):
                        liveness.pinged(now)
                        nursery.start_soon(self._ping_until_answered, pinger, peer, liveness)
                    if peer in self._unsealed and now >= recheck_at:
                        recheck_at = now + SEAL_RECHECK
                        nursery.start_soon(self._greet, peer, self._configured(peer),
                                           time.time())
                    wake = self._wake[peer] = trio.Event()
                    with trio.move_on_after(WATCH_TICK):
                        await wake.wait()
                nursery.cancel_scope.cancel()
        finally:
            if self._liveness.get(peer) is liveness:
                del self._liveness[peer]
                self._wake.pop(peer, None)

    def _configured(self, peer: ID) -> BootstrapPeer:
        return next(p for p in self.peers if ID.from_base58(p.peer_id) == peer)

    async def _ping_until_answered(self, pinger: PingService, peer: ID,
                                   liveness: Liveness) -> None:
        """A failed ping (py-libp2p gives up after 10 s) is no answer: ping again, while the
        silence since the first one keeps counting."""
        while True:
            try:
                await pinger.ping(peer)
            except Exception as exc:
                log.debug("ping to %s failed: %s", short(peer), reason(exc))
                await trio.sleep(WATCH_TICK)
                continue
            was_usable = liveness.usable
            liveness.ponged(trio.current_time())
            self._answers_again(peer, liveness, was_usable)
            return
