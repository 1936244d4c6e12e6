"""Unit tests for p2pcache.protocol: framing, messages, sealing and replay protection."""

from __future__ import annotations

import json
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pcache.crypto import SealError, Sealer
from p2pcache.protocol import (
    AD_PREFIX,
    HEADER,
    LENGTH,
    MAX_FRAME_BYTES,
    MAX_SKEW_MS,
    REQUEST,
    RESPONSE,
    VERSION,
    Frame,
    FrameDecoder,
    FrameError,
    Message,
    ReplayGuard,
    StaleMessage,
    associated_data,
    open_frame,
    seal,
)

KEY = bytes(range(32))
T0 = 1_700_000_000_000


def raw_frame(version: int, mtype: int, request_id: int = 1, ts: int = T0,
              sealed: bytes = b"") -> bytes:
    body = HEADER.pack(version, mtype, request_id, ts) + sealed
    return LENGTH.pack(len(body)) + body


# -- frames -------------------------------------------------------------------------------

def test_frame_layout():
    frame = Frame(RESPONSE, 0x0102030405060708, 0x1112131415161718, b"SEALED")
    data = frame.encode()
    assert HEADER.size == 18
    assert data[:4] == struct.pack(">I", 18 + 6)
    assert data[4:6] == bytes([VERSION, RESPONSE])
    assert data[6:14] == bytes.fromhex("0102030405060708")
    assert data[14:22] == bytes.fromhex("1112131415161718")
    assert data[22:] == b"SEALED"
    assert frame.header() == data[4:22]


def test_encode_decode_round_trip():
    frames = [Frame(REQUEST, 1, T0, b"abc"), Frame(RESPONSE, 2**64 - 1, 0, b""),
              Frame(REQUEST, 0, 2**64 - 1, bytes(range(256)) * 10)]
    decoder = FrameDecoder()
    assert decoder.feed(b"".join(f.encode() for f in frames)) == frames
    assert decoder.pending == 0


def test_partial_frame_waits():
    data = Frame(REQUEST, 7, T0, b"xyz").encode()
    decoder = FrameDecoder()
    assert decoder.feed(data[:-1]) == []
    assert decoder.pending == len(data) - 1
    assert decoder.feed(data[-1:]) == [Frame(REQUEST, 7, T0, b"xyz")]
    assert decoder.pending == 0


def test_byte_by_byte():
    frames = [Frame(REQUEST, i, T0 + i, bytes([i]) * i) for i in range(5)]
    data = b"".join(f.encode() for f in frames)
    decoder = FrameDecoder()
    out = []
    for i in range(len(data)):
        out.extend(decoder.feed(data[i:i + 1]))
    assert out == frames


frame_st = st.builds(Frame, st.sampled_from([REQUEST, RESPONSE]), st.integers(0, 2**64 - 1),
                     st.integers(0, 2**64 - 1), st.binary(max_size=300))


@settings(deadline=None, max_examples=200)
@given(frames=st.lists(frame_st, max_size=6), data=st.data())
def test_property_any_chunking_yields_same_frames(frames, data):
    stream = b"".join(f.encode() for f in frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=20), label="cuts"))
    chunks, prev = [], 0
    for cut in cuts + [len(stream)]:
        chunks.append(stream[prev:cut])
        prev = cut
    decoder = FrameDecoder()
    out = []
    for chunk in chunks:
        out.extend(decoder.feed(chunk))
    assert out == frames
    assert decoder.pending == 0


def test_oversized_length_rejected_before_body():
    decoder = FrameDecoder(max_frame=1024)
    with pytest.raises(FrameError, match="exceeds"):
        decoder.feed(LENGTH.pack(1024 + HEADER.size + 1) + b"\x01\x01")


def test_oversized_length_rejected_from_the_length_alone():
    decoder = FrameDecoder()
    with pytest.raises(FrameError, match="exceeds"):
        decoder.feed(LENGTH.pack(0xFFFFFFFF))


def test_default_bound():
    decoder = FrameDecoder()
    assert MAX_FRAME_BYTES == 16 * 1024 * 1024
    # the largest allowed length is accepted (and waits for its body) ...
    assert decoder.feed(LENGTH.pack(MAX_FRAME_BYTES + HEADER.size) + b"\x01\x01abc") == []
    assert decoder.pending == 4 + 5
    # ... one more is not
    with pytest.raises(FrameError):
        FrameDecoder().feed(LENGTH.pack(MAX_FRAME_BYTES + HEADER.size + 1))


def test_bound_is_inclusive_for_custom_max():
    decoder = FrameDecoder(max_frame=10)
    frame = Frame(REQUEST, 1, T0, b"x" * 10)
    assert decoder.feed(frame.encode()) == [frame]
    with pytest.raises(FrameError):
        FrameDecoder(max_frame=10).feed(Frame(REQUEST, 1, T0, b"x" * 11).encode())


@pytest.mark.parametrize("length", [0, 1, 17])
def test_length_shorter_than_header(length):
    with pytest.raises(FrameError, match="shorter than the header"):
        FrameDecoder().feed(LENGTH.pack(length) + b"\x00" * 40)


def test_header_only_frame_is_valid():
    assert FrameDecoder().feed(raw_frame(VERSION, REQUEST)) == [Frame(REQUEST, 1, T0, b"")]


@pytest.mark.parametrize("version", [0, 2, 255])
def test_bad_version(version):
    with pytest.raises(FrameError, match="version"):
        FrameDecoder().feed(raw_frame(version, REQUEST, sealed=b"abc"))


@pytest.mark.parametrize("mtype", [0, 3, 255])
def test_unknown_type(mtype):
    with pytest.raises(FrameError, match="unknown message type"):
        FrameDecoder().feed(raw_frame(VERSION, mtype, sealed=b"abc"))


def test_bad_frame_after_good_one_raises():
    decoder = FrameDecoder()
    with pytest.raises(FrameError):
        decoder.feed(raw_frame(VERSION, REQUEST) + raw_frame(9, REQUEST))


garbage_st = st.one_of(
    st.binary(max_size=400),
    # plausible prefixes make the decoder reach its later checks
    st.builds(lambda length, v, t, rest: LENGTH.pack(length) + bytes([v, t]) + rest,
              st.integers(0, 64), st.integers(0, 3), st.integers(0, 3), st.binary(max_size=100)),
    st.builds(lambda fs, tail: b"".join(f.encode() for f in fs) + tail,
              st.lists(frame_st, max_size=3), st.binary(max_size=40)),
)


@settings(deadline=None, max_examples=400)
@given(garbage=garbage_st, chunk=st.integers(1, 64))
def test_property_garbage_decodes_or_raises_frame_error(garbage, chunk):
    decoder = FrameDecoder(max_frame=1024)
    try:
        for i in range(0, len(garbage), chunk):
            for frame in decoder.feed(garbage[i:i + chunk]):
                assert isinstance(frame, Frame)
                assert frame.type in (REQUEST, RESPONSE)
    except FrameError:
        pass
    assert decoder.pending <= len(garbage)


# -- messages -----------------------------------------------------------------------------

def test_message_round_trip():
    msg = Message({"key": "GET /r accept=x", "etag": '"e"', "n": 5, "nested": {"a": [1, None]},
                   "ü": "✓"}, b"\x00\xffbinary body")
    assert Message.decode(msg.encode()) == msg


def test_message_encoding_is_canonical():
    assert Message({"b": 1, "a": 2}).encode() == LENGTH.pack(13) + b'{"a":2,"b":1}'
    assert Message({"a": 2, "b": 1}, b"x").encode() == Message({"b": 1, "a": 2}, b"x").encode()


@settings(deadline=None, max_examples=150)
@given(meta=st.dictionaries(st.text(max_size=10),
                            st.one_of(st.none(), st.booleans(), st.integers(-2**53, 2**53),
                                      st.text(max_size=20)), max_size=6),
       body=st.binary(max_size=500))
def test_property_message_round_trip(meta, body):
    assert Message.decode(Message(meta, body).encode()) == Message(meta, body)


@pytest.mark.parametrize("meta", [b"{not json", b"\xff\xfe{}", b"", b"{\"a\":1"])
def test_meta_not_json(meta):
    with pytest.raises(FrameError, match="not UTF-8 JSON"):
        Message.decode(LENGTH.pack(len(meta)) + meta + b"body")


@pytest.mark.parametrize("meta", [b"[1,2]", b'"str"', b"42", b"null", b"true"])
def test_meta_not_object(meta):
    with pytest.raises(FrameError, match="not a JSON object"):
        Message.decode(LENGTH.pack(len(meta)) + meta)


def test_meta_len_past_end():
    with pytest.raises(FrameError, match="runs past"):
        Message.decode(LENGTH.pack(100) + b'{"a":1}')
    with pytest.raises(FrameError, match="runs past"):
        Message.decode(LENGTH.pack(0xFFFFFFFF) + b"{}")


@pytest.mark.parametrize("plaintext", [b"", b"\x00", b"\x00\x00\x00"])
def test_plaintext_shorter_than_length(plaintext):
    with pytest.raises(FrameError):
        Message.decode(plaintext)


def test_deeply_nested_meta_is_a_frame_error():
    meta = b"[" * 100_000
    with pytest.raises(FrameError):
        Message.decode(LENGTH.pack(len(meta)) + meta)


# -- sealing ------------------------------------------------------------------------------

@pytest.fixture
def sealer() -> Sealer:
    return Sealer(KEY)


def test_associated_data():
    header = HEADER.pack(VERSION, RESPONSE, 5, T0)
    assert associated_data(header) == AD_PREFIX + header
    assert associated_data(header, "GET /x") == b"p2pcache/gh/1" + header + b"GET /x"


def test_seal_open_round_trip(sealer):
    msg = Message({"key": "GET /r accept=a"}, b"body")
    frame = seal(sealer, REQUEST, 42, msg, timestamp_ms=T0)
    assert (frame.type, frame.request_id, frame.timestamp_ms) == (REQUEST, 42, T0)
    assert b"body" not in frame.sealed
    (decoded,) = FrameDecoder().feed(frame.encode())
    assert open_frame(sealer, decoded, ReplayGuard(), clock_ms=T0 + 5) == msg


def test_seal_uses_current_clock_by_default(sealer):
    frame = seal(sealer, REQUEST, 1, Message({}))
    assert open_frame(sealer, frame, ReplayGuard()) == Message({})


def test_response_binding_round_trip(sealer):
    key = "GET /repos/o/r accept=application/vnd.github+json"
    msg = Message({"status": 200, "headers": {}, "fetched_at": 1.0}, b"{}")
    frame = seal(sealer, RESPONSE, 9, msg, key, timestamp_ms=T0)
    assert open_frame(sealer, frame, ReplayGuard(), key, clock_ms=T0) == msg


def test_response_with_different_binding_fails(sealer):
    frame = seal(sealer, RESPONSE, 9, Message({"status": 200}), "GET /a accept=x",
                 timestamp_ms=T0)
    guard = ReplayGuard()
    with pytest.raises(SealError):
        open_frame(sealer, frame, guard, "GET /b accept=x", clock_ms=T0)
    with pytest.raises(SealError):
        open_frame(sealer, frame, guard, "", clock_ms=T0)
    # a failed authentication never touches the replay cache
    assert len(guard._seen) == 0
    assert open_frame(sealer, frame, guard, "GET /a accept=x", clock_ms=T0) == \
        Message({"status": 200})


@pytest.mark.parametrize("change", [
    {"type": RESPONSE}, {"request_id": 43}, {"timestamp_ms": T0 + 1},
])
def test_header_is_authenticated(sealer, change):
    frame = seal(sealer, REQUEST, 42, Message({"a": 1}), timestamp_ms=T0)
    fields = {"type": frame.type, "request_id": frame.request_id,
              "timestamp_ms": frame.timestamp_ms, "sealed": frame.sealed} | change
    with pytest.raises(SealError):
        open_frame(sealer, Frame(**fields), ReplayGuard(), clock_ms=T0)


def test_other_key_fails(sealer):
    frame = seal(sealer, REQUEST, 1, Message({}), timestamp_ms=T0)
    with pytest.raises(SealError):
        open_frame(Sealer(bytes(32)), frame, ReplayGuard(), clock_ms=T0)


# -- replay protection --------------------------------------------------------------------

def test_replay_of_same_frame_rejected(sealer):
    frame = seal(sealer, REQUEST, 1, Message({"a": 1}), timestamp_ms=T0)
    guard = ReplayGuard()
    assert open_frame(sealer, frame, guard, clock_ms=T0) == Message({"a": 1})
    with pytest.raises(StaleMessage, match="already seen"):
        open_frame(sealer, frame, guard, clock_ms=T0 + 1000)


def test_two_seals_of_same_message_both_accepted(sealer):
    guard = ReplayGuard()
    for _ in range(2):
        frame = seal(sealer, REQUEST, 1, Message({"a": 1}), timestamp_ms=T0)
        open_frame(sealer, frame, guard, clock_ms=T0)
    assert len(guard._seen) == 2


@pytest.mark.parametrize("offset,ok", [
    (0, True), (MAX_SKEW_MS, True), (-MAX_SKEW_MS, True),
    (MAX_SKEW_MS + 1, False), (-MAX_SKEW_MS - 1, False), (10 * MAX_SKEW_MS, False),
])
def test_clock_window(sealer, offset, ok):
    assert MAX_SKEW_MS == 60_000
    frame = seal(sealer, REQUEST, 1, Message({}), timestamp_ms=T0 + offset)
    guard = ReplayGuard()
    if ok:
        assert open_frame(sealer, frame, guard, clock_ms=T0) == Message({})
    else:
        with pytest.raises(StaleMessage, match="from our clock"):
            open_frame(sealer, frame, guard, clock_ms=T0)
        assert len(guard._seen) == 0


def nonce_frame(nonce: bytes, ts: int) -> Frame:
    return Frame(REQUEST, 1, ts, nonce + b"\x00" * 20)


def test_guard_forgets_nonces_older_than_twice_the_skew():
    guard = ReplayGuard(max_skew_ms=1000)
    guard.check(nonce_frame(b"A" * 12, T0), T0)
    guard.check(nonce_frame(b"B" * 12, T0 + 500), T0 + 500)
    # still remembered at exactly 2x skew
    guard.check(nonce_frame(b"C" * 12, T0 + 2000), T0 + 2000)
    assert list(guard._seen) == [b"A" * 12, b"B" * 12, b"C" * 12]
    with pytest.raises(StaleMessage):
        guard.check(nonce_frame(b"A" * 12, T0 + 2000), T0 + 2000)
    # one ms later A can no longer pass the clock check, so it is forgotten
    guard.check(nonce_frame(b"D" * 12, T0 + 2001), T0 + 2001)
    assert list(guard._seen) == [b"B" * 12, b"C" * 12, b"D" * 12]
    # and a fresh frame reusing A's nonce is accepted again
    guard.check(nonce_frame(b"A" * 12, T0 + 2001), T0 + 2001)
    guard.check(nonce_frame(b"E" * 12, T0 + 10_000), T0 + 10_000)
    assert list(guard._seen) == [b"E" * 12]


def test_future_frame_cannot_be_replayed_while_in_window():
    """A frame stamped +skew, seen at t, still passes the clock at t + 2*skew: its nonce
    must still be remembered then."""
    guard = ReplayGuard(max_skew_ms=1000)
    frame = nonce_frame(b"F" * 12, T0 + 1000)
    guard.check(frame, T0)
    for now in (T0 + 1, T0 + 1000, T0 + 1999, T0 + 2000):
        with pytest.raises(StaleMessage, match="already seen"):
            guard.check(frame, now)
    with pytest.raises(StaleMessage, match="from our clock"):
        guard.check(frame, T0 + 2001)


# -- body encoding (zlib) -------------------------------------------------------------------

def test_a_body_is_compressed_only_for_an_asker_that_accepts_it():
    from p2pcache.protocol import ENCODING, decode_body, encode_body

    body = b'{"url":"https://api.github.com/repos/o/r"}' * 200
    plain = Message({"status": 200}, body)
    assert encode_body(plain, None) is plain
    assert encode_body(plain, "zlib") is plain, "encodings must be a list"
    assert encode_body(Message({}, b"tiny"), [ENCODING]).meta == {}
    sent = encode_body(plain, ["br", ENCODING])
    assert sent.meta == {"status": 200, "encoding": "zlib"} and len(sent.body) < len(body) / 10
    back = decode_body(Message.decode(sent.encode()))
    assert back.meta == {"status": 200} and back.body == body


@pytest.mark.parametrize("meta, body, why", [
    ({"encoding": "br"}, b"x", "unknown body encoding"),
    ({"encoding": ["zlib"]}, b"x", "unknown body encoding"),
    ({"encoding": "zlib"}, b"not zlib at all", "not zlib data"),
    ({"encoding": "zlib"}, zlib.compress(b"x" * 5000)[:-6], "truncated"),
    ({"encoding": "zlib"}, zlib.compress(b"x" * 5000) + b"trailing", "trailed"),
])
def test_a_bad_encoded_body_is_a_frame_error(meta, body, why):
    from p2pcache.protocol import decode_body

    with pytest.raises(FrameError, match=why):
        decode_body(Message(meta, body))


def test_a_zlib_bomb_stops_at_the_limit():
    from p2pcache.protocol import decode_body

    bomb = zlib.compress(b"\0" * (64 * 1024 * 1024), 9)  # 64 MiB in ~64 KiB
    assert len(bomb) < 100_000
    with pytest.raises(FrameError, match="inflates past"):
        decode_body(Message({"encoding": "zlib"}, bomb), limit=16 * 1024 * 1024)
