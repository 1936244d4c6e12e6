"""Asking servers: which server is a key's home, one long-lived request stream per server,
and how long to wait for an answer before the next server (or GitHub) is asked.

One stream per server peer carries many requests at once, matched by request id (a new
stream per request costs ~2 ms of protocol negotiation; a reused one ~0.4 ms).
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import trio
from libp2p.abc import INetStream
from libp2p.peer.id import ID

from .. import headers as fields
from ..cache import PeerAnswer
from ..crypto import SealError
from ..graphql import REPRESENTATION_HEADERS
from ..models import ApiRequest, ApiResponse
from ..protocol import (ENCODING, PROTOCOL_ID, REQUEST, RESPONSE, FrameDecoder, FrameError,
                        Message, StaleMessage, decode_body, open_frame, seal)
from .host import DIALBACK_TIMEOUT, READ_CHUNK, reason, short

if TYPE_CHECKING:
    from . import Mesh

log = logging.getLogger("p2pcache.mesh")

OPEN_STREAM_TIMEOUT = 5.0
MAX_PEER_PATH = 8192  # characters of a path a peer may ask for
TOO_LARGE = "response too large for the mesh"
PAUSED = "paused: GitHub asked this node's token to wait"
MAX_SERVERS_ASKED = 3  # for one request, before asking GitHub directly
WARM_TIMEOUT = 30.0  # seconds to build and move one warm-start answer
WARM_RETRY_FOR = 30.0  # seconds a joining runner keeps asking a server busy with others
PATIENCE_CAP = 6  # x the peer timeout: the longest wait for a server that keeps answering
# Request headers a peer may pass on: they select GitHub's representation, never identity.
PEER_REQUEST_HEADERS = ("accept", "x-github-api-version")
GRAPHQL_OP = "graphql"  # a shared GraphQL query: the body is the client's POST body
GRAPHQL_REQUEST_HEADERS = REPRESENTATION_HEADERS  # those that shape a GraphQL answer
# A GraphQL body past this is not sent to a peer (it would not fit a request frame).
MAX_PEER_GRAPHQL_BYTES = 48 * 1024


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


@dataclass
class _Pending:
    key: str
    done: trio.Event = field(default_factory=trio.Event)
    answer: Message | None = None


class PeerChannel:
    """Our long-lived request stream to one server peer."""

    def __init__(self, asker: Asker, peer: ID, stream: INetStream) -> None:
        self.asker = asker
        self.mesh = asker.mesh
        self.peer = peer
        self.stream = stream
        self.closed = False
        self._pending: dict[int, _Pending] = {}
        self._ids = itertools.count(1)
        self._write_lock = trio.Lock()
        self.heard_at = trio.current_time()  # when the peer last sent us anything here

    async def request(self, request: ApiRequest, key: str, etag: str | None,
                      patience: float, not_before: float | None = None) -> PeerAnswer | None:
        meta: dict[str, object] = {
            "key": key, "method": "GET", "path": str(request.target), "encodings": [ENCODING],
            "headers": {k: v for k, v in request.headers.items() if k in PEER_REQUEST_HEADERS}}
        body = b""
        if request.keyed is not None:  # a GraphQL query: its body, and what shapes its answer
            meta = {"op": GRAPHQL_OP, "key": key, "encodings": [ENCODING], "headers": {
                k: v for k, v in request.headers.items() if k in GRAPHQL_REQUEST_HEADERS}}
            body = request.body
        if etag:
            meta["etag"] = etag
        if not_before is not None:
            meta["not_before"] = not_before
        message = await self.call(meta, key, patience, body)
        if message is not None and message.meta.get("error") == TOO_LARGE:
            raise AskGitHub(TOO_LARGE)  # every server would fetch it and say the same
        if message is not None and message.meta.get("paused") is True:
            self.asker.paused(self.peer, message.meta.get("retry_after"))
            raise AskGitHub(PAUSED)  # with our own token, at once; never back through it
        return None if message is None else _peer_answer(message)

    async def call(self, meta: dict[str, object], key: str,
                   patience: float = math.inf, body: bytes = b"") -> Message | None:
        """Send one sealed request and wait for its answer: None if the stream broke, or if
        the peer has been silent on this stream for `patience` seconds while we wait."""
        request_id = next(self._ids)
        pending = _Pending(key)
        self._pending[request_id] = pending
        frame = seal(self.mesh.sealer, REQUEST, request_id, Message(meta, body))
        try:
            async with self._write_lock:
                # A frame cut in half by a caller's timeout would corrupt the stream for
                # every other request on it: write whole frames, under a deadline of their own.
                with trio.CancelScope(shield=True) as scope:
                    scope.deadline = trio.current_time() + OPEN_STREAM_TIMEOUT
                    await self.stream.write(frame.encode())
                if scope.cancelled_caught:
                    raise trio.TooSlowError("writing to the peer timed out")
            if await self._answer_or_silence(pending, patience):
                self._went_silent()
            return pending.answer
        except Exception as exc:  # a broken stream: the caller asks GitHub instead
            log.debug("request to %s failed: %s", short(self.peer), exc)
            await self.close()
            return None
        finally:
            self._pending.pop(request_id, None)

    async def _answer_or_silence(self, pending: _Pending, patience: float) -> bool:
        """Wait for the answer while the peer keeps sending: a server slowed by load, whose
        answers to our other requests still arrive, has our request queued behind them and
        is waited for (up to PATIENCE_CAP x patience in all); one silent for `patience` is
        given up on (the answer stays None), and the caller asks elsewhere. True if the
        peer went silent."""
        began = trio.current_time()
        give_up = began + patience * PATIENCE_CAP
        while not pending.done.is_set():
            silent_at = max(began, self.heard_at) + patience
            if trio.current_time() >= min(silent_at, give_up):
                return silent_at <= give_up
            with trio.move_on_at(min(silent_at, give_up)):
                await pending.done.wait()
        return False

    def _went_silent(self) -> None:
        """The server let an ask wait out the peer timeout: it is suspect (asks skip it
        until it speaks), and the asks still waiting on it here go elsewhere now rather
        than each waiting out a timeout of its own. The stream stays: a late answer on it
        is the word that clears the suspicion."""
        self.mesh.bootstrap.suspect(self.peer)
        for pending in self._pending.values():
            pending.done.set()

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
            log.warning("⚠️  Reading answers from %s failed: %s", self.peer, reason(exc))
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
        self.asker.channel_closed(self)
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
    vouched = meta.get("vouched")
    if type(vouched) not in (int, float) or not math.isfinite(vouched):
        vouched = None  # unknown: revalidated under any floor
    # A clock ahead of ours (or a forged time) must not keep an entry fresh for longer.
    return PeerAnswer(ApiResponse(status, headers, message.body, "peer", vouched=vouched),
                      min(fetched_at, time.time()))


class Asker:
    """Our side of every server conversation: cache asks, warm starts, checks."""

    def __init__(self, mesh: Mesh, peer_timeout: float) -> None:
        self.mesh = mesh
        self.peer_timeout = peer_timeout
        self._channels: dict[ID, PeerChannel] = {}
        self._opening: dict[ID, trio.Lock] = {}
        self._paused_until: dict[ID, float] = {}  # as servers told us, for the log

    async def ask(self, request: ApiRequest, key: str, etag: str | None,
                  not_before: float | None = None) -> PeerAnswer | None:
        servers = self.mesh.bootstrap.servers()
        if not servers:
            return None
        if len(str(request.target)) > MAX_PEER_PATH or len(request.body) > MAX_PEER_GRAPHQL_BYTES:
            return None  # a responder would refuse it: GitHub directly, stream left alone
        # A home that does not answer (dead, reset, timed out, could not reach GitHub) hands
        # the key to the next server in the same order: still about once for the fleet.
        for peer in rendezvous_order(key, servers)[:MAX_SERVERS_ASKED]:
            if peer not in self.mesh.bootstrap.servers():
                continue  # suspect since this ask began (another ask timed out on it)
            channel = None  # stays None if opening the stream ran out of time
            with trio.move_on_after(self.peer_timeout) as opening:
                channel = await self._channel(peer)
            if channel is None:
                if opening.cancelled_caught:
                    self.mesh.bootstrap.suspect(peer)
                continue
            try:
                answer = await channel.request(request, key, etag, self.peer_timeout,
                                               not_before)
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
                    stream = await self.mesh.host.new_stream(peer, [PROTOCOL_ID])
            except Exception as exc:
                log.debug("could not open a cache stream to %s: %s", short(peer), reason(exc))
                return None
            channel = PeerChannel(self, peer, stream)
            self._channels[peer] = channel
            self.mesh.start_soon(channel.read_loop)
            return channel

    def paused(self, peer: ID, retry_after: object) -> None:
        """A server said GitHub asked its token to wait: counted, and said once a pause."""
        self.mesh.counters.peer_paused_answers += 1
        wait = float(retry_after) if isinstance(retry_after, (int, float)) \
            and not isinstance(retry_after, bool) and math.isfinite(retry_after) else 0.0
        now = time.time()
        if now >= self._paused_until.get(peer, 0.0):
            log.warning("⚠️  Server %s is paused by GitHub's rate limit for %.0f s more: this "
                        "node asks GitHub with its own token meanwhile", short(peer), wait)
        if len(self._paused_until) > 1000:
            self._paused_until = {p: t for p, t in self._paused_until.items() if t > now}
        self._paused_until[peer] = max(now + min(max(wait, 1.0), 3600.0),
                                       self._paused_until.get(peer, 0.0))

    def channel_closed(self, channel: PeerChannel) -> None:
        if self._channels.get(channel.peer) is channel:
            del self._channels[channel.peer]

    async def warm(self, peer: ID, max_bytes: int,
                   deferred: Callable[[float], None] | None = None) -> Message | None:
        """Ask a server for its hot entries (warm start); None if it had none for us. A
        server that is busy with other joiners says when to ask again: we do, for a while,
        and tell `deferred` how long we wait."""
        give_up = trio.current_time() + WARM_RETRY_FOR
        while True:
            answer = None
            with trio.move_on_after(WARM_TIMEOUT):
                channel = await self._channel(peer)
                if channel is not None:
                    answer = await channel.call({"op": "warm", "key": "warm",
                                                 "max_bytes": max_bytes,
                                                 "encodings": [ENCODING]}, "warm")
            if answer is None or "error" not in answer.meta:
                return answer
            retry = answer.meta.get("retry_after")
            if type(retry) not in (int, float) or not 0 < retry <= WARM_RETRY_FOR \
                    or trio.current_time() + retry > give_up:
                return None
            if deferred is not None:
                deferred(retry)
            await trio.sleep(retry)

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
        connected = self.mesh.connected_peers()
        peers = [p for p in connected if p in self.mesh.bootstrap.ids] + \
            [p for p in connected if p not in self.mesh.bootstrap.ids]
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
