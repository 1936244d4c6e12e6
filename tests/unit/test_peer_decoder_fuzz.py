"""Fuzzing what a peer's bytes go through before anything answers them (issue 10).

Whatever arrives, only the documented exceptions may escape: FrameError (bad framing or
plaintext), SealError (wrong key), StaleMessage (clock or replay), ValueError (a request the
responder refuses). Anything else would end the stream's task with a traceback. Fixed
budget and derandomized, so CI runs the same examples in seconds.
"""

from __future__ import annotations

import json
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pcache.crypto import Sealer, SealError
from p2pcache.mesh.answering import MAX_PEER_PATH, PEER_REQUEST_HEADERS, peer_request
from p2pcache.protocol import (HEADER, LENGTH, MAX_REQUEST_FRAME_BYTES, REQUEST, VERSION, Frame,
                               FrameDecoder, FrameError, Message, ReplayGuard, StaleMessage,
                               now_ms, open_frame, seal)

BUDGET = settings(max_examples=300, deadline=None, derandomize=True,
                  suppress_health_check=[HealthCheck.too_slow])
SEALER = Sealer(bytes(32))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20)
paths = st.one_of(st.text(), st.from_regex(r"\A/[ -~]{0,40}\Z"), st.just("/repos/o/r"),
                  st.just("//evil.example/x"),
                  st.integers(MAX_PEER_PATH - 2, MAX_PEER_PATH + 2).map(lambda n: "/" + "a" * n))
header_names = st.sampled_from(PEER_REQUEST_HEADERS + ("authorization", "Accept", "x"))
metas = st.fixed_dictionaries(
    {}, optional={"path": paths | json_values, "method": st.sampled_from(["GET", "HEAD", "POST"])
                  | json_values, "headers": st.dictionaries(header_names, json_values, max_size=3)
                  | json_values, "key": json_values, "etag": json_values, "op": json_values})


def frame_bytes(mtype: int, request_id: int, length_delta: int, sealed: bytes,
                version: int) -> bytes:
    """A frame whose fields are mostly right: the decoder's deeper branches get exercised."""
    body = HEADER.pack(version, mtype, request_id, now_ms()) + sealed
    return LENGTH.pack(max(0, len(body) + length_delta)) + body


frames = st.builds(frame_bytes, st.integers(0, 255), st.integers(0, 2**64 - 1),
                   st.sampled_from([0, 0, 0, -1, 1, -18, 2**31]), st.binary(max_size=64),
                   st.sampled_from([VERSION, VERSION, 0, 2]))
streams = st.lists(st.binary(max_size=80) | frames, max_size=8).map(b"".join)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0] + points, points + [len(data)])]


@BUDGET
@given(streams, st.lists(st.integers(0, 10_000), max_size=6),
       st.sampled_from([MAX_REQUEST_FRAME_BYTES, 64]))
def test_frame_decoder_raises_only_frame_errors(data, cuts, bound):
    decoder = FrameDecoder(bound)
    try:
        for chunk in chunked(data, cuts):
            for frame in decoder.feed(chunk):
                assert isinstance(frame, Frame) and len(frame.sealed) <= bound
            # Never more than one frame's worth is held back.
            assert decoder.pending <= LENGTH.size + HEADER.size + bound
    except FrameError:
        pass


@BUDGET
@given(st.binary(max_size=200) | st.builds(
    lambda meta, body, delta: struct.pack(">I", max(0, len(meta) + delta)) + meta + body,
    st.one_of(st.binary(max_size=60), json_values.map(lambda v: json.dumps(v).encode())),
    st.binary(max_size=20), st.sampled_from([0, 0, 1, -1, 2**20])))
def test_message_decode_raises_only_frame_errors(plaintext):
    try:
        message = Message.decode(plaintext)
    except FrameError:
        return
    assert isinstance(message.meta, dict) and isinstance(message.body, bytes)


@BUDGET
@given(metas)
def test_peer_request_raises_only_value_errors(meta):
    try:
        request = peer_request(meta)
    except ValueError:
        return
    # What is let through is a plain GET of a visible-ASCII absolute path.
    assert request.method == "GET"
    target = str(request.target)  # canonical (targets.parse), the same as a local request
    assert target.startswith("/") and not target.startswith("//")
    assert len(target) <= MAX_PEER_PATH
    assert all("!" <= c <= "~" for c in target)
    assert set(request.headers) <= set(PEER_REQUEST_HEADERS)
    assert all(isinstance(v, str) and v.isascii() for v in request.headers.values())


@BUDGET
@given(metas, st.binary(max_size=32), st.lists(st.integers(0, 4096), max_size=4),
       st.booleans())
def test_the_whole_inbound_path_raises_only_documented_errors(meta, body, cuts, tamper):
    """Bytes in, as a responder reads them: decode frames, open them, read the request."""
    try:
        data = seal(SEALER, REQUEST, 1, Message(meta, body)).encode()
    except (ValueError, TypeError):  # meta a sender could not even encode (e.g. surrogates)
        return
    if tamper:
        data = data[:-1] + bytes([data[-1] ^ 1])
    decoder, guard = FrameDecoder(MAX_REQUEST_FRAME_BYTES), ReplayGuard()
    try:
        for chunk in chunked(data, cuts):
            for frame in decoder.feed(chunk):
                message = open_frame(SEALER, frame, guard)
                peer_request(message.meta)
    except (FrameError, SealError, StaleMessage, ValueError):
        pass
