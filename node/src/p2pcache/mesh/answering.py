"""Answering peers: inbound cache streams, each request resolved in its own task, within
bounds a peer cannot push past (streams, unfinished bytes, time), before and after its
frames authenticate; warm-start offers and dial-backs, rate limited.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Awaitable, Callable

import trio
from libp2p.abc import INetStream
from libp2p.peer.id import ID

from .. import dialback, limits
from .. import headers as fields
from .. import targets
from ..crypto import SealError
from ..models import ApiRequest, ApiResponse
from ..protocol import (MAX_FRAME_BYTES, MAX_REQUEST_FRAME_BYTES, MAX_SKEW_MS, REQUEST,
                        ENCODING, RESPONSE, FrameDecoder, FrameError, Message, StaleMessage,
                        encode_body, open_frame, seal)
from ..warmstart import MAX_BYTES, MAX_PLAIN_BYTES, OfferBudget, Shelf, ask_key
from .asking import (GRAPHQL_OP, GRAPHQL_REQUEST_HEADERS, MAX_PEER_GRAPHQL_BYTES, MAX_PEER_PATH,
                     PAUSED, PEER_REQUEST_HEADERS, TOO_LARGE, WARM_TIMEOUT)
from .host import READ_CHUNK, probe, reason, remote_address, reset, short
from .invalidating import OP

if TYPE_CHECKING:
    from . import Mesh

log = logging.getLogger("p2pcache.mesh")

MAX_ANSWERS_PER_STREAM = 64
# What a peer can make this node hold on inbound streams, before its frames authenticate.
# A peer without the secret never gets further, so these bound everything it can pin.
FRAME_DEADLINE = 10.0  # seconds: a frame begun (or a new stream's first frame) must be whole
MAX_STREAMS_PER_PEER = 8  # inbound cache streams open at once per peer ID
MAX_INBOUND_STREAMS = 256  # inbound cache streams open at once, all peers together
MAX_PARTIAL_BYTES = 4 * 1024 * 1024  # unfinished request frames buffered, all peers together
WARM_AT_ONCE = 2  # warm-start answers being built or written at once
WARM_INTERVAL = 60.0  # seconds: one warm start per peer
# Peer IDs cost nothing to make, so the peer's minute alone bounds nothing: all peers
# together get WARM_BURST full offers back to back, then one per WARM_FLEET_INTERVAL (a
# bucket of bytes: smaller offers cost less, warmstart.OfferBudget).
WARM_BURST = 2
WARM_FLEET_INTERVAL = 10.0
# The last offer built is given again for this long to runners that join after it (a queue
# of jobs, a matrix), each charged only the bytes it is sent (warmstart.Shelf).
WARM_SHELF_S = WARM_FLEET_INTERVAL

# A peer's GET, and the time (GitHub's clock) its answer must have been vouched after.
Serve = Callable[[ApiRequest, "float | None"], Awaitable[ApiResponse]]
Offer = Callable[[int], Awaitable[Message]]  # a warm start's entries, within a byte budget


class StreamLimit(Exception):
    """A peer went over an inbound limit (streams, bytes, time): its stream is reset."""


class Responder:
    """Our side of every inbound cache stream. `serve` answers a peer's GET (cache, then
    GitHub); `offer` builds a warm start (warmstart.py)."""

    def __init__(self, mesh: Mesh, serve: Serve, offer: Offer | None,
                 offer_version: Callable[[], object] = lambda: 0) -> None:
        self.mesh = mesh
        self.serve = serve
        self.offer = offer
        self.offer_version = offer_version  # changes when an offer built before is void
        self._inbound: dict[ID, int] = {}  # inbound cache streams open, per peer
        self._inbound_total = 0
        self._partial_bytes = 0  # bytes of unfinished request frames, all streams
        self._dialbacks = dialback.Limiter()
        # A warm start's answer is one big frame: built once for joiners at once (and kept a
        # few seconds for those after), few written at once, one per peer a minute, and
        # what they cost bounded for all peers together.
        self._warm_slots = trio.Semaphore(WARM_AT_ONCE)
        self._warm_offers = OfferBudget(WARM_INTERVAL, WARM_BURST, WARM_FLEET_INTERVAL)
        self._warm_shelf = Shelf(WARM_SHELF_S)
        self._warm_building = trio.Lock()  # joiners at once wait for one build, then share it

    async def serve_stream(self, stream: INetStream) -> None:
        """libp2p runs this per inbound stream; an exception here would take down the
        connection's stream acceptor, so nothing may escape."""
        peer = stream.muxed_conn.peer_id
        refusal = self._admit_stream(peer)
        if refusal is not None:
            self.limited(peer, refusal)
            await reset(stream)
            return
        # This peer's requests take their turns to GitHub as one asker (limits.Turns): a
        # flood from it waits behind itself, not in front of other peers.
        limits.ASKER.set(f"peer:{peer}")
        try:
            write_lock = trio.Lock()
            async with trio.open_nursery() as nursery:
                error = await self._read_requests(stream, peer, nursery, write_lock)
            if error is not None:
                await stream.reset()
            else:
                await stream.close()
        except Exception as exc:
            log.debug("cache stream from %s ended: %s", short(peer), reason(exc))
            await reset(stream)
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
                        message = open_frame(self.mesh.sealer, frame, self.mesh.guard)
                        # A drop is applied before the next frame of this stream is read:
                        # a request the writer sends after it never sees the old state.
                        applied = self.mesh.invalidating.receive(peer, message.meta) \
                            if message.meta.get("op") == OP else (None, None)
                        await slots.acquire()  # backpressure: stop reading when we are busy
                        nursery.start_soon(self._answer, stream, write_lock,
                                           frame.request_id, message, slots, *applied)
                except SealError as exc:
                    self.mesh.auth_failed(peer)
                    return exc
                except (FrameError, StaleMessage) as exc:
                    self.mesh.bad_frame(peer, exc)
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
                      message: Message, slots: trio.Semaphore,
                      applied: dict[str, object] | None = None,
                      then: Callable[[], Awaitable[None]] | None = None) -> None:
        try:
            meta = message.meta
            key = str(meta.get("key", ""))
            op = meta.get("op", "get")
            try:
                if applied is not None:
                    body_meta, body = applied, b""
                elif op == "get":
                    body_meta, body = await self._answer_read(peer_request(meta), meta)
                elif op == GRAPHQL_OP:
                    body_meta, body = await self._answer_read(
                        graphql_request(meta, message.body), meta)
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
                log.warning("answering a peer request failed: %s", reason(exc))
                body_meta, body = {"error": "internal error"}, b""
            try:
                await self._send(stream, write_lock, request_id, key,
                                 encode_body(Message(body_meta, body), meta.get("encodings")))
            except Exception as exc:  # an unencodable key, or the stream went away
                log.debug("could not answer peer: %s", reason(exc))
            if then is not None:
                self.mesh.start_soon(then)
        finally:
            slots.release()

    async def _send(self, stream: INetStream, write_lock: trio.Lock, request_id: int,
                    key: str, answer: Message) -> None:
        frame = seal(self.mesh.sealer, RESPONSE, request_id, answer, key)
        async with write_lock:
            await stream.write(frame.encode())

    async def _answer_read(self, request: ApiRequest,
                          meta: dict[str, object]) -> tuple[dict[str, object], bytes]:
        response = await self.serve(request, not_before(meta, time.time()))
        if response.paused_until is not None:
            # GitHub asked our token to wait: the asker asks with its own meanwhile, at once.
            self.mesh.counters.peer_requests_paused += 1
            wait = max(0.0, response.paused_until - time.time())
            return {"error": PAUSED, "paused": True, "retry_after": round(wait, 1)}, b""
        if response.generated:  # we could not reach GitHub: the asker may do better
            return {"error": "upstream unreachable from this peer"}, b""
        if len(response.body) > MAX_FRAME_BYTES - 1024 * 1024:
            return {"error": TOO_LARGE}, b""
        body_meta: dict[str, object] = {
            "status": response.status, "headers": response.headers,
            "fetched_at": response.fetched_at or time.time(), "source": response.source}
        if response.vouched is not None:
            body_meta["vouched"] = response.vouched
        body = response.body
        if meta.get("etag") and response.status == 200 \
                and response.headers.get("etag") == meta["etag"]:
            body_meta["status"], body = 304, b""  # the asker holds this body already
        return body_meta, body

    async def _answer_warm(self, stream: INetStream, write_lock: trio.Lock, request_id: int,
                           meta: dict[str, object], key: str) -> None:
        peer = stream.muxed_conn.peer_id
        budget, encodings = meta.get("max_bytes"), meta.get("encodings")
        ask = ask_key(budget, encodings)
        answer: Message | None = None
        wait = 0.0
        if self.offer is not None and type(budget) is int:  # a bad ask spends nothing
            async with self._warm_building:  # joiners at once wait for one build, then share it
                answer, wait = await self._warm_answer(str(peer), ask, budget, encodings)
        if answer is None:
            refusal: dict[str, object] = {"error": "no warm start offered now"}
            if wait > 0:  # a runner that joined during a flood asks again, and is served
                refusal["retry_after"] = math.ceil(wait * 10) / 10
            await self._send(stream, write_lock, request_id, key, Message(refusal))
            return
        async with self._warm_slots:  # few big frames being sealed and written at once
            self.mesh.counters.warm_offers += 1
            with trio.move_on_after(WARM_TIMEOUT):
                await self._send(stream, write_lock, request_id, key, answer)

    async def _warm_answer(self, peer: str, ask: object, budget: int,
                           encodings: object) -> tuple[Message | None, float]:
        """The offer on the shelf, charged what it sends, or a new one built (and shelved),
        charged what it read; or (None, seconds to wait) if the budget says no."""
        version = self.offer_version()
        shelved = self._warm_shelf.get(ask, version, trio.current_time())
        wait, charged = self._warm_offers.admit(
            peer, trio.current_time(), None if shelved is None else len(shelved.body))
        if wait > 0 or shelved is not None:
            return shelved if wait == 0 else None, wait
        assert self.offer is not None
        zlib = isinstance(encodings, list) and ENCODING in encodings
        offered = await self.offer(min(budget, MAX_BYTES if zlib else MAX_PLAIN_BYTES))
        answer = await trio.to_thread.run_sync(encode_body, offered, encodings)
        if len(answer.body) > MAX_PLAIN_BYTES:  # did not compress into one frame: less of it
            offered = await self.offer(MAX_PLAIN_BYTES)
            answer = await trio.to_thread.run_sync(encode_body, offered, encodings)
            if len(answer.body) > MAX_PLAIN_BYTES:
                answer = offered
        self._warm_offers.settle(charged, len(offered.body))
        self._warm_shelf.put(ask, version, trio.current_time(), answer)
        self.mesh.counters.warm_offers_built += 1
        return answer, 0.0

    async def _dialback(self, stream: INetStream, meta: dict[str, object]) -> dict[str, object]:
        """Dial the asker back at the IP its connection comes from and the port it names,
        from a throwaway host: proves its port is open from outside (dialback.py)."""
        asker = stream.muxed_conn.peer_id
        where = dialback.target(remote_address(stream), str(meta.get("multiaddr", "")), asker)
        wait = self._dialbacks.admit(str(asker), trio.current_time())
        if wait > 0:
            return {"error": "dial-back refused: rate limited", "retry_after": round(wait, 1)}
        return await probe(where)

    # -- asking peers for checks (doctor) -------------------------------------------------

    def limited(self, peer: ID, why: str) -> Exception:
        self.mesh.counters.peer_limited += 1
        self.mesh.warn_once(peer, why, f"⚠️  Peer {peer} went over a resource limit ({why}); "
                       "stream reset")
        return StreamLimit(why)



def not_before(meta: dict[str, object], now: float) -> float | None:
    """A peer's `not_before` (GitHub's clock, Unix seconds): answer only with what GitHub
    vouched for after it. ValueError unless it is a finite number no later than a clock
    window ahead of ours (GitHub's Date cannot pass a time far in our future: every answer
    would be a revalidation)."""
    value = meta.get("not_before")
    if value is None:
        return None
    if type(value) not in (int, float) or not math.isfinite(value) \
            or value > now + MAX_SKEW_MS / 1000:
        raise ValueError("not_before must be a Unix time no later than now")
    return float(value)


def graphql_request(meta: dict[str, object], body: bytes) -> ApiRequest:
    """A peer's GraphQL query: the body (the cache reads it as it reads a client's, and
    answers only a query the fleet may share) and the headers that shape the answer.
    ValueError for anything else."""
    if not body or len(body) > MAX_PEER_GRAPHQL_BYTES:
        raise ValueError("a GraphQL body of at most "
                         f"{MAX_PEER_GRAPHQL_BYTES // 1024} KiB is required")
    headers = _headers(meta, GRAPHQL_REQUEST_HEADERS)
    return ApiRequest("POST", targets.parse("/graphql"), headers, body)


def peer_request(meta: dict[str, object]) -> ApiRequest:
    """Only a GET of an API path, with representation headers: nothing else is honoured.
    ValueError for anything else (the peer gets an `error` answer)."""
    path = meta.get("path")
    if not isinstance(path, str) or len(path) > MAX_PEER_PATH:
        raise ValueError("path must be an absolute API path")
    target = targets.parse(path)  # TargetError is a ValueError
    if meta.get("method", "GET") not in ("GET", "HEAD"):
        raise ValueError("only GET is answered for peers")
    return ApiRequest("GET", target, _headers(meta, PEER_REQUEST_HEADERS))


def _headers(meta: dict[str, object], honoured: tuple[str, ...]) -> dict[str, str]:
    raw = meta.get("headers") or {}
    if not isinstance(raw, dict):
        raise ValueError("headers must be an object")
    headers: dict[str, str] = {}
    for name, value in raw.items():
        if str(name).lower() not in honoured:
            continue  # ignored, as the spec says
        if not isinstance(value, str) or len(value) > 1024 \
                or not fields.valid(str(name), value):
            raise ValueError(f"header {str(name).lower()} must be a short ASCII string")
        headers[str(name).lower()] = value
    return headers

