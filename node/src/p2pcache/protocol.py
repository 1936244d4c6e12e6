"""Wire messages and framing of /p2pcache/gh/1.0.0 (docs/protocol.md is the spec).

Sans-I/O: bytes in, messages out. The stream code in mesh.py only moves bytes.

    frame     = length:u32be  header  sealed          (length counts header + sealed)
    header    = version:u8=1  type:u8  request_id:u64be  timestamp_ms:u64be
    sealed    = AES-256-GCM(nonce 12 || ciphertext || tag 16) of the plaintext
    plaintext = meta_len:u32be  meta (UTF-8 JSON object)  body (raw bytes, the rest)
    AD        = "p2pcache/gh/1" || header || (RESPONSE only: the request's cache key, UTF-8)

An asker that lists "zlib" in its request's meta "encodings" may get an answer whose body is
zlib-compressed, marked meta "encoding": "zlib" (GitHub's JSON shrinks 5-20x: fewer bytes
through Noise and Yamux, which cost more CPU than the compression).
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from .crypto import Sealer, SealError

PROTOCOL_ID = "/p2pcache/gh/1.0.0"
VERSION = 1
REQUEST = 1
RESPONSE = 2
MESSAGE_TYPES = (REQUEST, RESPONSE)

HEADER = struct.Struct(">BBQQ")
LENGTH = struct.Struct(">I")
MAX_FRAME_BYTES = 16 * 1024 * 1024  # bounds memory per stream; bigger bodies skip the mesh
# Inbound streams carry only REQUEST frames (a path and two headers), so a responder bounds
# them tightly: a peer without the secret cannot make it buffer more than this per stream.
MAX_REQUEST_FRAME_BYTES = 64 * 1024
MAX_SKEW_MS = 60_000  # frames older or newer than this are stale
AD_PREFIX = b"p2pcache/gh/1"
ENCODING = "zlib"
MIN_ENCODED_BODY = 1024  # smaller bodies go as they are


class FrameError(Exception):
    """Bytes that are not a valid frame: the stream carrying them is reset."""


class StaleMessage(Exception):
    """A frame outside the clock window, or one already seen (a replay)."""


@dataclass(frozen=True)
class Frame:
    type: int
    request_id: int
    timestamp_ms: int
    sealed: bytes

    def header(self) -> bytes:
        return HEADER.pack(VERSION, self.type, self.request_id, self.timestamp_ms)

    def encode(self) -> bytes:
        body = self.header() + self.sealed
        return LENGTH.pack(len(body)) + body


class FrameDecoder:
    """Incremental decoder: feed() bytes as they arrive, get whole frames back.

    The length is checked before any body is buffered, so an oversized frame costs at most
    4 bytes of memory before the stream is reset.
    """

    def __init__(self, max_frame: int = MAX_FRAME_BYTES) -> None:
        self._buf = bytearray()
        self._max = max_frame

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames = []
        while len(self._buf) >= LENGTH.size:
            (length,) = LENGTH.unpack_from(self._buf)
            if length < HEADER.size:
                raise FrameError(f"frame length {length} is shorter than the header")
            if length > self._max + HEADER.size:
                raise FrameError(f"frame length {length} exceeds the bound "
                                 f"{self._max + HEADER.size}")
            if len(self._buf) < LENGTH.size + length:
                break
            raw = bytes(self._buf[LENGTH.size:LENGTH.size + length])
            del self._buf[:LENGTH.size + length]
            version, mtype, request_id, ts = HEADER.unpack_from(raw)
            if version != VERSION:
                raise FrameError(f"unsupported protocol version {version}")
            if mtype not in MESSAGE_TYPES:
                raise FrameError(f"unknown message type {mtype}")
            frames.append(Frame(mtype, request_id, ts, raw[HEADER.size:]))
        return frames

    @property
    def pending(self) -> int:
        return len(self._buf)


@dataclass
class Message:
    """A decoded plaintext: JSON metadata plus an opaque body."""

    meta: dict[str, Any]
    body: bytes = b""

    def encode(self) -> bytes:
        meta = json.dumps(self.meta, separators=(",", ":"), sort_keys=True).encode("utf-8")
        return LENGTH.pack(len(meta)) + meta + self.body

    @classmethod
    def decode(cls, plaintext: bytes) -> Message:
        if len(plaintext) < LENGTH.size:
            raise FrameError("plaintext shorter than its meta length")
        (meta_len,) = LENGTH.unpack_from(plaintext)
        end = LENGTH.size + meta_len
        if end > len(plaintext):
            raise FrameError("meta length runs past the plaintext")
        try:
            meta = json.loads(plaintext[LENGTH.size:end].decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise FrameError(f"meta is not UTF-8 JSON: {type(exc).__name__}") from None
        if not isinstance(meta, dict):
            raise FrameError("meta is not a JSON object")
        return cls(meta, plaintext[end:])


def encode_body(message: Message, accepted: object) -> Message:
    """The answer as sent to an asker that accepts `accepted` (its meta "encodings")."""
    if len(message.body) < MIN_ENCODED_BODY or not isinstance(accepted, list) \
            or ENCODING not in accepted:
        return message
    return Message({**message.meta, "encoding": ENCODING}, zlib.compress(message.body, 1))


def decode_body(message: Message, limit: int = MAX_FRAME_BYTES) -> Message:
    """A received answer with its body as it was before encoding. FrameError for an
    unknown encoding, a broken stream, or one that inflates past `limit` (a bomb)."""
    encoding = message.meta.get("encoding")
    if encoding is None:
        return message
    if encoding != ENCODING:
        raise FrameError(f"unknown body encoding {str(encoding)[:32]!r}")
    inflater = zlib.decompressobj()
    try:
        body = inflater.decompress(message.body, limit)
    except zlib.error as exc:
        raise FrameError(f"body is not zlib data: {exc}") from None
    if inflater.unconsumed_tail or not inflater.eof or inflater.unused_data:
        raise FrameError(f"zlib body is truncated, trailed, or inflates past {limit} bytes")
    return Message({k: v for k, v in message.meta.items() if k != "encoding"}, body)


def associated_data(frame_header: bytes, binding: str = "") -> bytes:
    return AD_PREFIX + frame_header + binding.encode("utf-8")


@dataclass
class ReplayGuard:
    """Rejects frames outside the clock window and nonces seen within it."""

    max_skew_ms: int = MAX_SKEW_MS
    _seen: OrderedDict[bytes, int] = field(default_factory=OrderedDict)

    def check(self, frame: Frame, now_ms: int) -> None:
        if abs(frame.timestamp_ms - now_ms) > self.max_skew_ms:
            raise StaleMessage(
                f"timestamp {frame.timestamp_ms} is {abs(frame.timestamp_ms - now_ms)} ms "
                f"from our clock (bound {self.max_skew_ms} ms)")
        # Expire nonces that can no longer pass the clock check anyway.
        horizon = now_ms - 2 * self.max_skew_ms
        while self._seen and next(iter(self._seen.values())) < horizon:
            self._seen.popitem(last=False)
        nonce = frame.sealed[:12]
        if nonce in self._seen:
            raise StaleMessage("nonce already seen (replayed frame)")
        self._seen[nonce] = now_ms


def now_ms() -> int:
    return int(time.time() * 1000)


def seal(sealer: Sealer, mtype: int, request_id: int, message: Message, binding: str = "",
         timestamp_ms: int | None = None) -> Frame:
    ts = now_ms() if timestamp_ms is None else timestamp_ms
    header = HEADER.pack(VERSION, mtype, request_id, ts)
    return Frame(mtype, request_id, ts, sealer.seal(associated_data(header, binding),
                                                    message.encode()))


def open_frame(sealer: Sealer, frame: Frame, guard: ReplayGuard, binding: str = "",
               clock_ms: int | None = None) -> Message:
    """Authenticate first (so garbage never touches the replay cache), then check freshness."""
    plaintext = sealer.open(associated_data(frame.header(), binding), frame.sealed)
    guard.check(frame, now_ms() if clock_ms is None else clock_ms)
    return Message.decode(plaintext)


__all__ = [
    "PROTOCOL_ID", "REQUEST", "RESPONSE", "MAX_FRAME_BYTES", "MAX_REQUEST_FRAME_BYTES", "Frame",
    "FrameDecoder",
    "FrameError", "Message", "ReplayGuard", "SealError", "StaleMessage", "seal", "open_frame",
    "ENCODING", "encode_body", "decode_body",
]
