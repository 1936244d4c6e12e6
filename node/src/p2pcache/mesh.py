"""The libp2p side: host, bootstrap peers, and the sealed cache protocol in both directions.

Asking: one long-lived stream per server peer carries many requests at once, matched by
request id (a new stream per request costs ~2 ms of protocol negotiation; a reused one
~0.4 ms). Answering: every request on an inbound stream is resolved in its own task.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import random
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import AsyncIterator, Awaitable, Callable

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import INetConn, INetStream, INetwork, INotifee
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as new_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.host.ping import PingService
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

from . import dialback
from . import headers as fields
from . import targets
from .cache import PeerAnswer
from .config import BootstrapPeer
from .crypto import Sealer, SealError
from .models import ApiRequest, ApiResponse
from .policy import Liveness
from .protocol import (ENCODING, MAX_FRAME_BYTES, MAX_REQUEST_FRAME_BYTES, PROTOCOL_ID, REQUEST,
                       RESPONSE, FrameDecoder, FrameError, Message, ReplayGuard, StaleMessage,
                       decode_body, encode_body, open_frame, seal)
from .stats import Counters

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
OPEN_STREAM_TIMEOUT = 5.0
MAX_BACKOFF = 30.0
READ_CHUNK = 64 * 1024
MAX_ANSWERS_PER_STREAM = 64
DIALBACK_TIMEOUT = dialback.TIMEOUT
# What a peer can make this node hold on inbound streams, before its frames authenticate.
# A peer without the secret never gets further, so these bound everything it can pin.
FRAME_DEADLINE = 10.0  # seconds: a frame begun (or a new stream's first frame) must be whole
MAX_STREAMS_PER_PEER = 8  # inbound cache streams open at once per peer ID
MAX_INBOUND_STREAMS = 256  # inbound cache streams open at once, all peers together
MAX_PARTIAL_BYTES = 4 * 1024 * 1024  # unfinished request frames buffered, all peers together
MAX_PEER_PATH = 8192  # characters of a path a peer may ask for
TOO_LARGE = "response too large for the mesh"
MAX_SERVERS_ASKED = 3  # for one request, before asking GitHub directly
WARM_AT_ONCE = 2  # warm-start answers being built or written at once
WARM_INTERVAL = 60.0  # seconds: one warm start per peer
WARM_TIMEOUT = 30.0  # seconds to build and move one warm-start answer
PATIENCE_CAP = 6  # x the peer timeout: the longest wait for a server that keeps answering
WATCH_TICK = 0.5  # seconds between looks at a connected bootstrap peer (policy.Liveness)
# Request headers a peer may pass on: they select GitHub's representation, never identity.
PEER_REQUEST_HEADERS = ("accept", "x-github-api-version")

Serve = Callable[[ApiRequest], Awaitable[ApiResponse]]
Offer = Callable[[int], Awaitable[Message]]  # a warm start's entries, within a byte budget
OnServer = Callable[[ID], Awaitable[None]]


def _new_host(key_pair: KeyPair):  # -> IHost
    """Noise only and Yamux only: py-libp2p would also offer plaintext, secio and mplex."""
    noise = NoiseTransport(key_pair, noise_privkey=new_x25519_key_pair().private_key)
    return new_host(key_pair=key_pair, sec_opt={NOISE_PROTOCOL_ID: noise},
                    muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux})


def short(peer: ID | str) -> str:
    text = str(peer)
    return text if len(text) <= 16 else f"{text[:8]}…{text[-6:]}"


def rendezvous_order(key: str, peers: list[ID]) -> list[ID]:
    """Each key has a home peer, then a second, a third...: every node ranks the servers
    alike, so a fleet with several servers fetches a key once, and when its home does not
    answer they all agree on the next one."""
    return sorted(peers, key=lambda p: hashlib.sha256(f"{p}|{key}".encode()).digest(),
                  reverse=True)


def rendezvous(key: str, peers: list[ID]) -> ID:
    return rendezvous_order(key, peers)[0]


class AskGitHub(Exception):
    """A server's answer that no other server would better: the asker goes to GitHub."""


class _ConnectionLog(INotifee):
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


@dataclass
class _Pending:
    key: str
    done: trio.Event = field(default_factory=trio.Event)
    answer: Message | None = None


class PeerChannel:
    """Our long-lived request stream to one server peer."""

    def __init__(self, mesh: Mesh, peer: ID, stream: INetStream) -> None:
        self.mesh = mesh
        self.peer = peer
        self.stream = stream
        self.closed = False
        self._pending: dict[int, _Pending] = {}
        self._ids = itertools.count(1)
        self._write_lock = trio.Lock()
        self.heard_at = trio.current_time()  # when the peer last sent us anything here

    async def request(self, request: ApiRequest, key: str, etag: str | None,
                      patience: float) -> PeerAnswer | None:
        meta: dict[str, object] = {
            "key": key, "method": "GET", "path": str(request.target), "encodings": [ENCODING],
            "headers": {k: v for k, v in request.headers.items() if k in PEER_REQUEST_HEADERS}}
        if etag:
            meta["etag"] = etag
        message = await self.call(meta, key, patience)
        if message is not None and message.meta.get("error") == TOO_LARGE:
            raise AskGitHub(TOO_LARGE)  # every server would fetch it and say the same
        return None if message is None else _peer_answer(message)

    async def call(self, meta: dict[str, object], key: str,
                   patience: float = math.inf) -> Message | None:
        """Send one sealed request and wait for its answer: None if the stream broke, or if
        the peer has been silent on this stream for `patience` seconds while we wait."""
        request_id = next(self._ids)
        pending = _Pending(key)
        self._pending[request_id] = pending
        frame = seal(self.mesh.sealer, REQUEST, request_id, Message(meta))
        try:
            async with self._write_lock:
                # A frame cut in half by a caller's timeout would corrupt the stream for
                # every other request on it: write whole frames, under a deadline of their own.
                with trio.CancelScope(shield=True) as scope:
                    scope.deadline = trio.current_time() + OPEN_STREAM_TIMEOUT
                    await self.stream.write(frame.encode())
                if scope.cancelled_caught:
                    raise trio.TooSlowError("writing to the peer timed out")
            await self._answer_or_silence(pending, patience)
            return pending.answer
        except Exception as exc:  # a broken stream: the caller asks GitHub instead
            log.debug("request to %s failed: %s", short(self.peer), exc)
            await self.close()
            return None
        finally:
            self._pending.pop(request_id, None)

    async def _answer_or_silence(self, pending: _Pending, patience: float) -> None:
        """Wait for the answer while the peer keeps sending: a server slowed by load, whose
        answers to our other requests still arrive, has our request queued behind them and
        is waited for (up to PATIENCE_CAP x patience in all); one silent for `patience` is
        given up on (the answer stays None), and the caller asks elsewhere."""
        began = trio.current_time()
        give_up = began + patience * PATIENCE_CAP
        while not pending.done.is_set():
            deadline = min(max(began, self.heard_at) + patience, give_up)
            if trio.current_time() >= deadline:
                return
            with trio.move_on_at(deadline):
                await pending.done.wait()

    async def read_loop(self) -> None:
        decoder = FrameDecoder()
        answered = False
        try:
            while True:
                try:
                    data = await self.stream.read(READ_CHUNK)
                except Exception:  # EOF or reset: the peer or its connection went away
                    break
                if not data:
                    break
                self.heard_at = trio.current_time()
                self.mesh.heard(self.peer)
                for frame in decoder.feed(data):
                    pending = self._pending.get(frame.request_id)
                    if frame.type != RESPONSE:
                        raise FrameError(f"unexpected message type {frame.type}")
                    if pending is None:
                        continue  # answered after we gave up waiting: drop it
                    pending.answer = decode_body(open_frame(self.mesh.sealer, frame,
                                                            self.mesh.guard, pending.key))
                    pending.done.set()
                    answered = True
        except SealError:
            self.mesh.auth_failed(self.peer)
        except (FrameError, StaleMessage) as exc:
            self.mesh.bad_frame(self.peer, exc)
        except Exception as exc:  # this task runs in the mesh's nursery: never crash it
            log.warning("⚠️  Reading answers from %s failed: %s", self.peer, _reason(exc))
        finally:
            if not answered and self._pending and not self.mesh.closing:
                self.mesh.warn_once(self.peer, "silent",
                                    f"⚠️  Peer {self.peer} closed our cache stream without "
                                    "answering: does it use the same fleet secret "
                                    "(P2P_CACHE_SECRET or the token) and namespace?")
            await self.close()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for pending in self._pending.values():
            pending.done.set()  # answer None: the callers fall back to GitHub
        self.mesh.channel_closed(self)
        with trio.move_on_after(1):
            try:
                await self.stream.reset()
            except Exception:
                pass


def _peer_answer(message: Message) -> PeerAnswer | None:
    meta = message.meta
    if "error" in meta:
        return None  # the peer could not answer (too large, GitHub unreachable ...)
    try:
        status = int(meta["status"])
        # Validation where a peer's bytes enter: fields h11 could not send are dropped.
        headers = fields.clean((str(k), str(v)) for k, v in dict(meta.get("headers", {})).items())
        fetched_at = float(meta["fetched_at"])
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("⚠️  A peer answer lacks a valid field (%s); asking GitHub instead", exc)
        return None
    if not math.isfinite(fetched_at):
        return None
    # A clock ahead of ours (or a forged time) must not keep an entry fresh for longer.
    return PeerAnswer(ApiResponse(status, headers, message.body, "peer"),
                      min(fetched_at, time.time()))


class Mesh:
    """The libp2p host of one node. `serve` answers peers' requests (cache, then GitHub)."""

    def __init__(self, key_pair: KeyPair, listen: multiaddr.Multiaddr,
                 bootstrap: tuple[BootstrapPeer, ...], sealer: Sealer, counters: Counters,
                 serve: Serve, peer_timeout: float, namespace: str,
                 peer_silence: float, offer: Offer | None = None,
                 on_server: OnServer | None = None) -> None:
        self.host = _new_host(key_pair)
        self.host.set_stream_handler(PROTOCOL_ID, self._serve_stream)
        self._connection_log = _ConnectionLog()
        self.host.get_network().register_notifee(self._connection_log)
        self.peer_id = self.host.get_id()
        self.listen = listen
        self.bootstrap = bootstrap
        self.sealer = sealer
        self.counters = counters
        self.serve = serve
        self.offer = offer  # answers a runner's warm start (warmstart.py)
        self.on_server = on_server  # runs once each time a bootstrap peer is connected
        self.peer_timeout = peer_timeout
        self.peer_silence = peer_silence
        self.namespace = namespace
        self.guard = ReplayGuard()
        self.closing = False
        self._bootstrap_ids = {ID.from_base58(p.peer_id) for p in bootstrap}
        self._channels: dict[ID, PeerChannel] = {}
        self._liveness: dict[ID, Liveness] = {}  # connected bootstrap peers
        self._opening: dict[ID, trio.Lock] = {}
        self._warned: set[tuple[str, str]] = set()
        self._nursery: trio.Nursery | None = None
        self._inbound: dict[ID, int] = {}  # inbound cache streams open, per peer
        self._inbound_total = 0
        self._partial_bytes = 0  # bytes of unfinished request frames, all streams
        self._dialbacks = dialback.Limiter()
        # A warm start's answer is one big frame: few at once, one per peer a minute.
        self._warm_slots = trio.Semaphore(WARM_AT_ONCE)
        self._warm_asked: dict[ID, float] = {}

    # -- lifecycle ----------------------------------------------------------------------

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Mesh]:
        async with self.host.run([self.listen]):
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                log.info("✓ P2P host started, listening on port %s",
                         self.listen.value_for_protocol("tcp"))
                log.info("Peer ID: %s", self.peer_id)
                if self.bootstrap:
                    log.info("✓ P2P bootstrap peers configured: %s",
                             ", ".join(p.multiaddr for p in self.bootstrap))
                    log.info("Connecting to %d bootstrap peer(s)...", len(self.bootstrap))
                    for peer in self.bootstrap:
                        nursery.start_soon(self._maintain, peer)
                else:
                    log.info("⚠️  No bootstrap peers configured (set MCP_P2P_BOOTSTRAP_PEERS "
                             "secret)")
                try:
                    yield self
                finally:
                    self.closing = True
                    nursery.cancel_scope.cancel()

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
        return bool(self._servers())

    def _servers(self) -> list[ID]:
        connected = set(self.host.get_connected_peers())
        return [p for p in self._bootstrap_ids if p in connected]

    # -- bootstrap ----------------------------------------------------------------------

    async def _maintain(self, peer: BootstrapPeer) -> None:
        """Keep one bootstrap peer connected: dial, watch, and redial with backoff."""
        info = info_from_p2p_addr(multiaddr.Multiaddr(peer.multiaddr))
        backoff = 1.0
        was_connected = False
        pinger = PingService(self.host)
        while True:
            if info.peer_id in self.host.get_connected_peers():
                was_connected = True
                await self._watch(pinger, info.peer_id)
                continue
            if was_connected:
                log.warning("⚠️  Lost connection to bootstrap peer %s; reconnecting",
                            peer.multiaddr)
                was_connected = False
            # py-libp2p refuses to redial a peer that failed recently; our own backoff
            # decides when a bootstrap peer is worth another try.
            network = self.host.get_network()
            if hasattr(network, "unblock_peer"):
                network.unblock_peer(info.peer_id)
            try:
                with trio.fail_after(CONNECT_TIMEOUT):
                    await self.host.connect(info)
            except trio.TooSlowError:
                log.warning("⚠️  Timeout connecting to bootstrap peer %s (retrying in %.0f s)",
                            peer.multiaddr, backoff)
            except Exception as exc:  # libp2p raises many types (and groups) on dial failure
                log.warning("⚠️  Could not connect to bootstrap peer %s: %s (retrying in %.0f s)",
                            peer.multiaddr, _reason(exc), backoff)
            else:
                log.info("✓ Connected to bootstrap peer %s", peer.multiaddr)
                was_connected = True
                if self.on_server is not None:
                    assert self._nursery is not None
                    self._nursery.start_soon(self.on_server, info.peer_id)
                backoff = 1.0
                continue
            await trio.sleep(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, MAX_BACKOFF)

    async def _watch(self, pinger: PingService, peer: ID) -> None:
        """Until `peer` disconnects. A server whose machine vanished sends no reset: without
        this, every ask would wait out the peer timeout. One that stays silent while a ping
        waits is disconnected, so asks go to the next server (or GitHub) until the redial
        succeeds; one that is only slow keeps answering something, and stays."""
        liveness = Liveness(self.peer_silence, heard=trio.current_time())
        self._liveness[peer] = liveness
        try:
            async with trio.open_nursery() as nursery:
                while peer in self.host.get_connected_peers():
                    now = trio.current_time()
                    if liveness.dead(now):
                        log.warning("⚠️  Bootstrap peer %s stopped answering pings; "
                                    "disconnecting (silent for %.0f s)", peer,
                                    liveness.silent_for(now))
                        with trio.move_on_after(5):
                            try:
                                await self.host.disconnect(peer)
                            except Exception:
                                pass
                        break
                    if liveness.ping_due(now):
                        liveness.pinged(now)
                        nursery.start_soon(_ping_until_answered, pinger, peer, liveness)
                    await trio.sleep(WATCH_TICK)
                nursery.cancel_scope.cancel()
        finally:
            if self._liveness.get(peer) is liveness:
                del self._liveness[peer]

    def heard(self, peer: ID) -> None:
        """The peer sent us something: it lives."""
        liveness = self._liveness.get(peer)
        if liveness is not None:
            liveness.hear(trio.current_time())

    # -- asking peers -------------------------------------------------------------------

    async def ask(self, request: ApiRequest, key: str, etag: str | None) -> PeerAnswer | None:
        servers = self._servers()
        if not servers:
            return None
        if len(str(request.target)) > MAX_PEER_PATH:
            return None  # a responder would refuse it: GitHub directly, stream left alone
        # A home that does not answer (dead, reset, timed out, could not reach GitHub) hands
        # the key to the next server in the same order: still about once for the fleet.
        for peer in rendezvous_order(key, servers)[:MAX_SERVERS_ASKED]:
            channel = None  # stays None if opening the stream ran out of time
            with trio.move_on_after(self.peer_timeout):
                channel = await self._channel(peer)
            if channel is None:
                continue
            try:
                answer = await channel.request(request, key, etag, self.peer_timeout)
            except AskGitHub:
                return None
            if answer is not None:
                return answer
        return None

    async def _channel(self, peer: ID) -> PeerChannel | None:
        channel = self._channels.get(peer)
        if channel is not None and not channel.closed:
            return channel
        lock = self._opening.setdefault(peer, trio.Lock())
        async with lock:  # concurrent first requests share one new stream
            channel = self._channels.get(peer)
            if channel is not None and not channel.closed:
                return channel
            try:
                with trio.fail_after(OPEN_STREAM_TIMEOUT):
                    stream = await self.host.new_stream(peer, [PROTOCOL_ID])
            except Exception as exc:
                log.debug("could not open a cache stream to %s: %s", short(peer), _reason(exc))
                return None
            channel = PeerChannel(self, peer, stream)
            self._channels[peer] = channel
            assert self._nursery is not None
            self._nursery.start_soon(channel.read_loop)
            return channel

    def channel_closed(self, channel: PeerChannel) -> None:
        if self._channels.get(channel.peer) is channel:
            del self._channels[channel.peer]

    # -- answering peers ----------------------------------------------------------------

    async def _serve_stream(self, stream: INetStream) -> None:
        """libp2p runs this per inbound stream; an exception here would take down the
        connection's stream acceptor, so nothing may escape."""
        peer = stream.muxed_conn.peer_id
        refusal = self._admit_stream(peer)
        if refusal is not None:
            self.limited(peer, refusal)
            await _reset(stream)
            return
        try:
            write_lock = trio.Lock()
            async with trio.open_nursery() as nursery:
                error = await self._read_requests(stream, peer, nursery, write_lock)
            if error is not None:
                await stream.reset()
            else:
                await stream.close()
        except Exception as exc:
            log.debug("cache stream from %s ended: %s", short(peer), _reason(exc))
            await _reset(stream)
        finally:
            self._release_stream(peer)

    def _admit_stream(self, peer: ID) -> str | None:
        """Count a new inbound stream in, or say which bound it would break."""
        if self._inbound_total >= MAX_INBOUND_STREAMS:
            return f"the node already serves {MAX_INBOUND_STREAMS} cache streams"
        if self._inbound.get(peer, 0) >= MAX_STREAMS_PER_PEER:
            return f"more than {MAX_STREAMS_PER_PEER} cache streams at once"
        self._inbound[peer] = self._inbound.get(peer, 0) + 1
        self._inbound_total += 1
        return None

    def _release_stream(self, peer: ID) -> None:
        left = self._inbound.get(peer, 1) - 1
        if left:
            self._inbound[peer] = left
        else:
            self._inbound.pop(peer, None)
        self._inbound_total -= 1

    async def _read_requests(self, stream: INetStream, peer: ID, nursery: trio.Nursery,
                             write_lock: trio.Lock) -> Exception | None:
        decoder = FrameDecoder(MAX_REQUEST_FRAME_BYTES)
        slots = trio.Semaphore(MAX_ANSWERS_PER_STREAM)
        # A new stream's first frame, and every frame once begun, must be whole within
        # FRAME_DEADLINE. Between frames a stream may idle: the asker's channel is long-lived.
        deadline = trio.current_time() + FRAME_DEADLINE
        held = 0  # this stream's share of MAX_PARTIAL_BYTES
        try:
            while True:
                data = b""
                with trio.move_on_at(deadline):
                    try:
                        data = await stream.read(READ_CHUNK)
                    except Exception:
                        return None  # EOF or reset: answers in flight still finish
                    if not data:
                        return None
                if not data:
                    return self.limited(peer, f"no whole frame within {FRAME_DEADLINE:.0f} s")
                try:
                    frames = decoder.feed(data)
                    for frame in frames:
                        if frame.type != REQUEST:
                            raise FrameError(f"unexpected message type {frame.type}")
                        message = open_frame(self.sealer, frame, self.guard)
                        await slots.acquire()  # backpressure: stop reading when we are busy
                        nursery.start_soon(self._answer, stream, write_lock,
                                           frame.request_id, message, slots)
                except SealError as exc:
                    self.auth_failed(peer)
                    return exc
                except (FrameError, StaleMessage) as exc:
                    self.bad_frame(peer, exc)
                    return exc
                pending = decoder.pending
                if pending > held and self._partial_bytes - held + pending > MAX_PARTIAL_BYTES:
                    return self.limited(peer, "unfinished frames of all peers exceed "
                                        f"{MAX_PARTIAL_BYTES // (1024 * 1024)} MiB")
                self._partial_bytes += pending - held
                held = pending
                if not pending:
                    deadline = math.inf
                elif frames or deadline == math.inf:  # a new frame began in this chunk
                    deadline = trio.current_time() + FRAME_DEADLINE
        finally:
            self._partial_bytes -= held

    async def _answer(self, stream: INetStream, write_lock: trio.Lock, request_id: int,
                      message: Message, slots: trio.Semaphore) -> None:
        try:
            meta = message.meta
            key = str(meta.get("key", ""))
            op = meta.get("op", "get")
            try:
                if op == "get":
                    body_meta, body = await self._answer_get(meta)
                elif op == "ping":
                    body_meta, body = {"pong": True}, b""
                elif op == "warm":
                    await self._answer_warm(stream, write_lock, request_id, meta, key)
                    return
                elif op == "dialback":
                    body_meta, body = await self._dialback(stream, meta), b""
                else:
                    body_meta, body = {"error": f"unknown op {op!r}"}, b""
            except ValueError as exc:
                body_meta, body = {"error": f"bad request: {exc}"}, b""
            except Exception as exc:  # never let one request take down the stream
                log.warning("answering a peer request failed: %s", _reason(exc))
                body_meta, body = {"error": "internal error"}, b""
            try:
                await self._send(stream, write_lock, request_id, key,
                                 encode_body(Message(body_meta, body), meta.get("encodings")))
            except Exception as exc:  # an unencodable key, or the stream went away
                log.debug("could not answer peer: %s", _reason(exc))
        finally:
            slots.release()

    async def _send(self, stream: INetStream, write_lock: trio.Lock, request_id: int,
                    key: str, answer: Message) -> None:
        frame = seal(self.sealer, RESPONSE, request_id, answer, key)
        async with write_lock:
            await stream.write(frame.encode())

    async def _answer_get(self, meta: dict[str, object]) -> tuple[dict[str, object], bytes]:
        request = _peer_request(meta)
        response = await self.serve(request)
        if response.generated:  # we could not reach GitHub: the asker may do better
            return {"error": "upstream unreachable from this peer"}, b""
        if len(response.body) > MAX_FRAME_BYTES - 1024 * 1024:
            return {"error": TOO_LARGE}, b""
        body_meta: dict[str, object] = {
            "status": response.status, "headers": response.headers,
            "fetched_at": response.fetched_at or time.time(), "source": response.source}
        body = response.body
        if meta.get("etag") and response.status == 200 \
                and response.headers.get("etag") == meta["etag"]:
            body_meta["status"], body = 304, b""  # the asker holds this body already
        return body_meta, body

    async def _answer_warm(self, stream: INetStream, write_lock: trio.Lock, request_id: int,
                           meta: dict[str, object], key: str) -> None:
        peer = stream.muxed_conn.peer_id
        now = trio.current_time()
        self._warm_asked = {p: t for p, t in self._warm_asked.items()
                            if now - t < WARM_INTERVAL}
        budget = meta.get("max_bytes")
        if self.offer is None or peer in self._warm_asked or type(budget) is not int:
            refusal = Message({"error": "no warm start offered now"})
            await self._send(stream, write_lock, request_id, key, refusal)
            return
        self._warm_asked[peer] = now
        async with self._warm_slots:  # holds the big frame's memory until it is written
            offered = await self.offer(budget)
            answer = await trio.to_thread.run_sync(encode_body, offered, meta.get("encodings"))
            self.counters.warm_offers += 1
            with trio.move_on_after(WARM_TIMEOUT):
                await self._send(stream, write_lock, request_id, key, answer)

    async def warm(self, peer: ID, max_bytes: int) -> Message | None:
        """Ask a server for its hot entries (warm start); None if it had none for us."""
        with trio.move_on_after(WARM_TIMEOUT):
            channel = await self._channel(peer)
            if channel is not None:
                answer = await channel.call({"op": "warm", "key": "warm", "max_bytes": max_bytes,
                                             "encodings": [ENCODING]}, "warm")
                if answer is not None and "error" not in answer.meta:
                    return answer
        return None

    async def _dialback(self, stream: INetStream, meta: dict[str, object]) -> dict[str, object]:
        """Dial the asker back at the IP its connection comes from and the port it names,
        from a throwaway host: proves its port is open from outside (dialback.py)."""
        asker = stream.muxed_conn.peer_id
        where = dialback.target(_remote_address(stream), str(meta.get("multiaddr", "")), asker)
        wait = self._dialbacks.admit(str(asker), trio.current_time())
        if wait > 0:
            return {"error": "dial-back refused: rate limited", "retry_after": round(wait, 1)}
        return await _probe(where)

    # -- asking peers for checks (doctor) -------------------------------------------------

    async def ping(self, peer: ID) -> bool:
        """A sealed round trip: true if the peer holds the same fleet key."""
        with trio.move_on_after(self.peer_timeout):
            channel = await self._channel(peer)
            if channel is not None:
                answer = await channel.call({"op": "ping", "key": "ping"}, "ping")
                return bool(answer and answer.meta.get("pong"))
        return False

    async def check_reachability(self, address: str) -> dict[str, object]:
        """Ask a connected peer to dial us back at `address` from outside."""
        connected = self.connected_peers()
        peers = [p for p in connected if p in self._bootstrap_ids] + \
            [p for p in connected if p not in self._bootstrap_ids]
        if not peers:
            return {"reachable": None, "error": "no connected peer can dial us back"}
        refused = None
        for peer in peers[:3]:
            with trio.move_on_after(DIALBACK_TIMEOUT + 5):
                channel = await self._channel(peer)
                if channel is None:
                    continue
                answer = await channel.call({"op": "dialback", "key": "dialback",
                                             "multiaddr": address}, "dialback")
                meta = answer.meta if answer is not None else {}
                # Only yes/no and a time are taken from the peer's answer, whatever it holds.
                if isinstance(meta.get("reachable"), bool):
                    result: dict[str, object] = {"reachable": meta["reachable"],
                                                 "checked_by": str(peer), "address": address}
                    ms = meta.get("connect_ms")
                    if meta["reachable"] and isinstance(ms, (int, float)) and math.isfinite(ms):
                        result["connect_ms"] = ms
                    if not meta["reachable"]:
                        result["error"] = ("it could not connect and find this node there "
                                           f"within {DIALBACK_TIMEOUT:.0f} s")
                    return result
                wait = meta.get("retry_after")
                if isinstance(wait, (int, float)) and math.isfinite(wait):
                    refused = (f"peer {peer} refused the dial-back (rate limited); try again "
                               f"in {math.ceil(wait)} s")
        return {"reachable": None, "error": refused or "no peer answered the dial-back request"}

    # -- reporting ----------------------------------------------------------------------

    def warn_once(self, peer: ID | str, kind: str, text: str) -> None:
        """One line per peer and kind of trouble: a hostile peer cannot flood the log."""
        if (str(peer), kind) not in self._warned and len(self._warned) < 10_000:
            self._warned.add((str(peer), kind))
            log.warning("%s", text)

    def auth_failed(self, peer: ID) -> None:
        self.counters.auth_failures += 1
        self.warn_once(peer, "auth", f"⚠️  Peer {peer} sent a cache message that failed authentication: "
                       f"it holds a different fleet secret or namespace (ours: key "
                       f"{self.sealer.fingerprint}, namespace {self.namespace!r}). It gets "
                       "nothing from this node.")

    def limited(self, peer: ID, reason: str) -> Exception:
        self.counters.peer_limited += 1
        self.warn_once(peer, reason, f"⚠️  Peer {peer} went over a resource limit ({reason}); "
                       "stream reset")
        return StreamLimit(reason)

    def bad_frame(self, peer: ID, exc: Exception) -> None:
        self.counters.bad_frames += 1
        self.warn_once(peer, "frame", f"⚠️  Peer {peer} sent an invalid cache frame ({exc}); "
                       "stream reset")


def _peer_request(meta: dict[str, object]) -> ApiRequest:
    """Only a GET of an API path, with representation headers: nothing else is honoured.
    ValueError for anything else (the peer gets an `error` answer)."""
    path = meta.get("path")
    if not isinstance(path, str) or len(path) > MAX_PEER_PATH:
        raise ValueError("path must be an absolute API path")
    target = targets.parse(path)  # TargetError is a ValueError
    if meta.get("method", "GET") not in ("GET", "HEAD"):
        raise ValueError("only GET is answered for peers")
    raw = meta.get("headers") or {}
    if not isinstance(raw, dict):
        raise ValueError("headers must be an object")
    headers: dict[str, str] = {}
    for name, value in raw.items():
        if str(name).lower() not in PEER_REQUEST_HEADERS:
            continue  # ignored, as the spec says
        if not isinstance(value, str) or len(value) > 1024 \
                or not fields.valid(str(name), value):
            raise ValueError(f"header {str(name).lower()} must be a short ASCII string")
        headers[str(name).lower()] = value
    return ApiRequest("GET", target, headers)


class StreamLimit(Exception):
    """A peer went over an inbound limit (streams, bytes, time): its stream is reset."""


def _remote_address(stream: INetStream) -> tuple[str, int] | None:
    """The IP and port the peer's connection comes from, as our socket sees them."""
    try:
        return stream.get_remote_address()
    except Exception:
        return None


async def _reset(stream: INetStream) -> None:
    with trio.move_on_after(1):
        try:
            await stream.reset()
        except Exception:
            pass


async def _probe(where: multiaddr.Multiaddr) -> dict[str, object]:
    """Connect to `where` from a throwaway host that listens nowhere and is closed after:
    reachable or not, and how fast. Nothing the target says is passed on."""
    info = info_from_p2p_addr(where)
    probe = _new_host(create_new_key_pair())
    started = time.perf_counter()
    try:
        async with probe.run([]):
            try:
                with trio.fail_after(DIALBACK_TIMEOUT):
                    await probe.connect(info)
                return {"reachable": True,
                        "connect_ms": round((time.perf_counter() - started) * 1000, 1)}
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    try:
                        await probe.close()
                    except Exception as exc:
                        log.debug("closing the dial-back host failed: %s", _reason(exc))
    except Exception as exc:
        log.debug("dial-back to %s failed: %s", where, _reason(exc))
        return {"reachable": False}


async def _ping_until_answered(pinger: PingService, peer: ID, liveness: Liveness) -> None:
    """A failed ping (py-libp2p gives up after 10 s) is no answer: ping again, while the
    silence since the first one keeps counting."""
    while True:
        try:
            await pinger.ping(peer)
        except Exception as exc:
            log.debug("ping to %s failed: %s", short(peer), _reason(exc))
            await trio.sleep(WATCH_TICK)
            continue
        liveness.ponged(trio.current_time())
        return


def _reason(exc: BaseException) -> str:
    """The root cause of a libp2p failure, which arrives wrapped in groups, MultiErrors
    and exception chains (e.g. 'all attempts to connect to 1.2.3.4:9100 failed')."""
    seen = 0
    while seen < 12:
        seen += 1
        inner = getattr(exc, "exceptions", None) or getattr(exc, "errors", None)
        if inner:
            exc = inner[0]
        elif exc.__cause__ is not None:
            exc = exc.__cause__
        else:
            break
    return str(exc) or type(exc).__name__


async def probe_peer(address: str, sealer: Sealer, timeout: float = 10.0) -> dict[str, object]:
    """From a throwaway host: can we connect to `address`, and does it answer a ping sealed
    under our fleet key? (For `p2pcache doctor`; the node is not involved.)"""
    result: dict[str, object] = {"connected": False, "sealed": False, "error": None}
    info = info_from_p2p_addr(multiaddr.Multiaddr(address))
    host = _new_host(create_new_key_pair())
    try:
        async with host.run([]):  # it only dials: no listener
            started = time.perf_counter()
            with trio.fail_after(timeout):
                await host.connect(info)
            result["connected"] = True
            result["connect_ms"] = round((time.perf_counter() - started) * 1000, 1)
            with trio.fail_after(timeout):
                stream = await host.new_stream(info.peer_id, [PROTOCOL_ID])
                await stream.write(seal(sealer, REQUEST, 1, Message({"op": "ping",
                                                                     "key": "ping"})).encode())
                decoder = FrameDecoder()
                while True:
                    try:
                        data = await stream.read(READ_CHUNK)
                    except Exception:
                        raise SealError("the peer reset the stream: another fleet key") from None
                    frames = decoder.feed(data)
                    if frames:
                        answer = open_frame(sealer, frames[0], ReplayGuard(), "ping")
                        result["sealed"] = bool(answer.meta.get("pong"))
                        break
            await host.close()
    except trio.TooSlowError:
        result["error"] = f"timed out after {timeout:.0f} s"
    except Exception as exc:
        result["error"] = _reason(exc)
    return result
