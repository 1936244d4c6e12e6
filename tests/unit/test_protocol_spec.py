"""docs/protocol.md and the code agree: its test vectors and its constants table are checked
against p2pcache, so the spec cannot drift from what the nodes do."""

from __future__ import annotations

import hashlib
import importlib
import json
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from p2pcache import config, crypto, policy, protocol
from p2pcache.crypto import SealError, Sealer
from p2pcache.models import ApiRequest
from p2pcache.protocol import (HEADER, REQUEST, RESPONSE, Frame, FrameDecoder, FrameError,
                               Message, ReplayGuard, StaleMessage, associated_data, open_frame)

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
SECRET = "test-secret"
NAMESPACE = "octo/repo"
REQUEST_TS = 1_700_000_000_000
RESPONSE_TS = 1_700_000_000_250


def _blocks() -> dict[str, str]:
    """Fenced blocks labelled ```<lang> <name>, by name."""
    text = DOC.read_text(encoding="utf-8")
    found: dict[str, str] = {}
    for lang, name, body in re.findall(r"^```(\w+) ([\w.]+)\n(.*?)^```", text, re.M | re.S):
        assert name not in found, f"block {name} appears twice in {DOC.name}"
        found[name] = body if lang != "hex" else re.sub(r"\s+", "", body)
    return found


BLOCKS = _blocks()


def hexblock(name: str) -> bytes:
    return bytes.fromhex(BLOCKS[name])


def text(name: str) -> str:
    return BLOCKS[name].strip()


@pytest.fixture(scope="module")
def key() -> bytes:
    return crypto.derive_key(SECRET, NAMESPACE)


@pytest.fixture(scope="module")
def sealer(key: bytes) -> Sealer:
    return Sealer(key)


def decode_one(raw: bytes) -> Frame:
    """Feed byte by byte: the documented frame is also a valid incremental stream."""
    decoder = FrameDecoder()
    frames: list[Frame] = []
    for i in range(len(raw)):
        frames += decoder.feed(raw[i:i + 1])
    assert len(frames) == 1 and decoder.pending == 0
    return frames[0]


def test_all_vector_blocks_are_present():
    for name in ("salt", "key", "fingerprint", "request.cache_key", "request.meta",
                 "request.header", "request.ad", "request.plaintext", "request.nonce",
                 "request.frame", "response.meta", "response.header", "response.ad",
                 "response.plaintext", "response.nonce", "response.frame",
                 "rendezvous.winner"):
        assert name in BLOCKS, f"docs/protocol.md lacks the ```... {name} block"


# -- key derivation ---------------------------------------------------------------------

def test_salt(key: bytes):
    assert crypto.salt_for(NAMESPACE) == hexblock("salt") == b"p2pcache/v1/" + b"octo/repo"


def test_derived_key(key: bytes):
    assert key == hexblock("key")
    reference = hashlib.pbkdf2_hmac("sha256", SECRET.encode(), hexblock("salt"), 600_000, 32)
    assert reference == key


def test_fingerprint(sealer: Sealer):
    assert sealer.fingerprint == text("fingerprint")


# -- the REQUEST vector -----------------------------------------------------------------

def test_request_cache_key_comes_from_policy():
    meta = json.loads(text("request.meta"))
    request = ApiRequest("GET", meta["path"], meta["headers"])
    assert policy.cache_key(request) == text("request.cache_key") == meta["key"]


def test_request_frame_decodes_to_the_documented_header():
    raw = hexblock("request.frame")
    frame = decode_one(raw)
    assert (frame.type, frame.request_id, frame.timestamp_ms) == (REQUEST, 1, REQUEST_TS)
    assert frame.header() == hexblock("request.header") == raw[4:4 + HEADER.size]
    assert int.from_bytes(raw[:4], "big") == len(raw) - 4
    assert frame.sealed[:12] == hexblock("request.nonce")
    assert frame.encode() == raw


def test_request_ad_and_plaintext_are_what_the_code_builds():
    assert associated_data(hexblock("request.header")) == hexblock("request.ad")
    meta = json.loads(text("request.meta"))
    assert Message(meta).encode() == hexblock("request.plaintext")


def test_request_frame_is_the_fixed_nonce_seal(key: bytes):
    nonce = hexblock("request.nonce")
    sealed = nonce + AESGCM(key).encrypt(nonce, hexblock("request.plaintext"),
                                         hexblock("request.ad"))
    assert Frame(REQUEST, 1, REQUEST_TS, sealed).encode() == hexblock("request.frame")


def test_request_frame_opens_to_the_documented_meta(sealer: Sealer):
    frame = decode_one(hexblock("request.frame"))
    message = open_frame(sealer, frame, ReplayGuard(), clock_ms=REQUEST_TS)
    assert message.meta == json.loads(text("request.meta"))
    assert message.body == b""


def test_request_frame_replayed_or_late_is_refused(sealer: Sealer):
    frame = decode_one(hexblock("request.frame"))
    guard = ReplayGuard()
    open_frame(sealer, frame, guard, clock_ms=REQUEST_TS)
    with pytest.raises(StaleMessage):
        open_frame(sealer, frame, guard, clock_ms=REQUEST_TS)
    window = protocol.MAX_SKEW_MS
    open_frame(sealer, frame, ReplayGuard(), clock_ms=REQUEST_TS + window)
    open_frame(sealer, frame, ReplayGuard(), clock_ms=REQUEST_TS - window)
    for clock in (REQUEST_TS + window + 1, REQUEST_TS - window - 1):
        with pytest.raises(StaleMessage):
            open_frame(sealer, frame, ReplayGuard(), clock_ms=clock)


def test_authentication_comes_before_the_replay_check(sealer: Sealer):
    frame = decode_one(hexblock("request.frame"))
    tampered = Frame(frame.type, frame.request_id, frame.timestamp_ms,
                     frame.sealed[:-1] + bytes([frame.sealed[-1] ^ 1]))
    guard = ReplayGuard()
    with pytest.raises(SealError):
        open_frame(sealer, tampered, guard, clock_ms=REQUEST_TS)
    open_frame(sealer, frame, guard, clock_ms=REQUEST_TS)  # the nonce was not burnt


def test_request_frame_needs_the_namespace_and_secret():
    frame = decode_one(hexblock("request.frame"))
    for secret, namespace in ((SECRET, "octo/other"), ("other-secret", NAMESPACE)):
        other = Sealer(crypto.derive_key(secret, namespace))
        with pytest.raises(SealError):
            open_frame(other, frame, ReplayGuard(), clock_ms=REQUEST_TS)


# -- the RESPONSE vector ----------------------------------------------------------------

def test_response_ad_binds_the_request_cache_key():
    ad = associated_data(hexblock("response.header"), text("request.cache_key"))
    assert ad == hexblock("response.ad")
    assert ad.endswith(text("request.cache_key").encode("utf-8"))


def test_response_frame(key: bytes, sealer: Sealer):
    raw = hexblock("response.frame")
    frame = decode_one(raw)
    assert (frame.type, frame.request_id, frame.timestamp_ms) == (RESPONSE, 1, RESPONSE_TS)
    assert frame.header() == hexblock("response.header")
    nonce = hexblock("response.nonce")
    sealed = nonce + AESGCM(key).encrypt(nonce, hexblock("response.plaintext"),
                                         hexblock("response.ad"))
    assert Frame(RESPONSE, 1, RESPONSE_TS, sealed).encode() == raw
    message = open_frame(sealer, frame, ReplayGuard(), text("request.cache_key"),
                         clock_ms=RESPONSE_TS)
    assert message.meta == json.loads(text("response.meta"))
    assert message.body == b'{"full_name":"octo/repo"}'
    assert Message(message.meta, message.body).encode() == hexblock("response.plaintext")


def test_response_does_not_open_under_another_key_binding(sealer: Sealer):
    frame = decode_one(hexblock("response.frame"))
    for binding in ("", "GET /repos/octo/repo accept=application/vnd.github+json"):
        with pytest.raises(SealError):
            open_frame(sealer, frame, ReplayGuard(), binding, clock_ms=RESPONSE_TS)


def test_rendezvous_winner():
    from p2pcache.mesh import rendezvous

    rows = re.findall(r"^\| `(12D3KooW\w+)` \| `([0-9a-f]{64})` \|$",
                      DOC.read_text(encoding="utf-8"), re.M)
    assert len(rows) == 2
    key = text("request.cache_key")
    for peer, digest in rows:
        assert hashlib.sha256(f"{peer}|{key}".encode()).hexdigest() == digest
    assert rendezvous(key, [peer for peer, _ in rows]) == text("rendezvous.winner")


# -- constants ---------------------------------------------------------------------------

def _constants() -> list[tuple[str, str, str]]:
    section = DOC.read_text(encoding="utf-8").split("## 1. Constants", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| ([^|]+?) \| `([^`]+)` \| `([\w.]+)` \|$", section, re.M)


def _resolve(path: str) -> object:
    module, *attrs = path.split(".")
    value: object = importlib.import_module(f"p2pcache.{module}")
    for attr in attrs:
        value = getattr(value, attr)
    return value


def test_constants_table_is_complete():
    names = {code for _, _, code in _constants()}
    for required in ("protocol.PROTOCOL_ID", "protocol.VERSION", "protocol.MAX_FRAME_BYTES",
                     "protocol.MAX_SKEW_MS", "protocol.AD_PREFIX", "crypto.PBKDF2_ITERATIONS",
                     "crypto.KEY_BYTES", "crypto.NONCE_BYTES", "crypto.TAG_BYTES",
                     "protocol.HEADER.size", "mesh.asking.OPEN_STREAM_TIMEOUT",
                     "config.Settings.peer_timeout"):
        assert required in names, f"the constants table lacks {required}"


@pytest.mark.parametrize("label,documented,code", _constants())
def test_documented_constant_matches_code(label: str, documented: str, code: str):
    actual = _resolve(code)
    if isinstance(actual, bytes):
        assert actual == documented.encode("ascii"), label
    elif isinstance(actual, str):
        assert actual == documented, label
    elif isinstance(actual, float):
        assert actual == float(documented), label
    else:
        assert actual == int(documented), label


def test_documented_frame_bound_is_enforced():
    bound = protocol.MAX_FRAME_BYTES + HEADER.size
    assert FrameDecoder().feed(protocol.LENGTH.pack(bound)) == []  # waits for the body
    with pytest.raises(FrameError):
        FrameDecoder().feed(protocol.LENGTH.pack(bound + 1))
    with pytest.raises(FrameError):
        FrameDecoder().feed(protocol.LENGTH.pack(HEADER.size - 1))


def test_documented_peer_request_headers_and_defaults():
    from p2pcache import mesh

    assert mesh.PEER_REQUEST_HEADERS == ("accept", "x-github-api-version")
    assert config.DEFAULT_PORT == 9100
    assert protocol.AD_PREFIX == b"p2pcache/gh/1" and len(protocol.AD_PREFIX) == 13


# -- invalidate (section 7.5, vector 13.4) ------------------------------------------------------

def test_invalidate_vector_is_what_a_write_drops_and_what_a_peer_accepts():
    from p2pcache.invalidation import for_write, parse_peer_drop, valid_id, valid_peer_id
    from p2pcache.targets import parse

    meta = json.loads(text("invalidate.meta"))
    drop = for_write("POST", parse("/repos/octo/repo/issues/5/comments"), 201)
    assert (meta["paths"], meta["trees"]) == (list(drop.paths), list(drop.trees))
    assert parse_peer_drop(meta) == drop
    assert valid_id(meta["id"]) and valid_peer_id(meta["origin"])
    assert meta["op"] == meta["key"] == "invalidate"
    assert json.loads(text("invalidate.answer")) == {"applied": True}
    from p2pcache.mesh.invalidating import OP
    assert OP == "invalidate"


def test_a_url_in_a_query_is_taken_and_the_target_stays_on_the_upstream():
    """Section 7.1: `://` is data in a query, `//` is one '/' in a path."""
    from p2pcache.mesh.answering import peer_request
    from p2pcache.targets import Base

    base = Base.parse("https://api.github.com")
    for path, url in (("/repos/o/r/pulls?u=http://evil", "https://api.github.com/repos/o/r/"
                       "pulls?u=http%3A%2F%2Fevil"),
                      ("/repos/o/r//evil.example/x",
                       "https://api.github.com/repos/o/r/evil.example/x")):
        assert base.url(peer_request({"path": path}).target) == url
    for bad in ("http://evil/x", "//evil/x", "/x#frag", "/x y", "/\u00e9"):
        with pytest.raises(ValueError):
            peer_request({"path": bad})
