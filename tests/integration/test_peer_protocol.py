"""Hostile and broken peers: a real libp2p host in the test process speaks to a node.

Garbage, oversized, wrongly sealed, stale and replayed frames each get the stream reset
and are counted; the node goes on serving everyone else.
"""

from __future__ import annotations

import json
import struct

import multiaddr
import pytest
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as x25519_key_pair
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE
from libp2p.security.noise.transport import Transport as NoiseTransport

from conftest import FLEET_TOKEN, NAMESPACE
from p2pcache.crypto import Sealer, derive_key
from p2pcache.protocol import (PROTOCOL_ID, REQUEST, FrameDecoder, Message, ReplayGuard,
                               now_ms, open_frame, seal)

FLEET_KEY = derive_key(FLEET_TOKEN, NAMESPACE)


def request_frame(path: str, sealer: Sealer, request_id: int = 1, ts: int | None = None):
    key = f"GET {path} accept=application/vnd.github+json"
    meta = {"key": key, "method": "GET", "path": path, "headers": {}}
    return key, seal(sealer, REQUEST, request_id, Message(meta), timestamp_ms=ts)


async def exchange(addr: str, payloads: list[bytes], wait: float = 3.0) -> tuple[bytes, bool]:
    """Send payloads on one cache stream; return (bytes received, whether it was reset)."""
    pair = create_new_key_pair()
    noise = NoiseTransport(pair, noise_privkey=x25519_key_pair().private_key)
    host = new_host(key_pair=pair, sec_opt={NOISE: noise}, muxer_preference="YAMUX")
    received = b""
    ended = False
    async with host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
        await host.connect(info)
        stream = await host.new_stream(info.peer_id, [PROTOCOL_ID])
        for payload in payloads:
            await stream.write(payload)
        with trio.move_on_after(wait):
            while True:
                try:
                    data = await stream.read(65536)
                except Exception:
                    ended = True
                    break
                if not data:
                    ended = True
                    break
                received += data
                if len(payloads) == 1 and FrameDecoder().feed(received):
                    break
        await host.close()
    return received, ended


def answers(received: bytes, keys: list[str]) -> list[Message]:
    sealer, guard = Sealer(FLEET_KEY), ReplayGuard()
    frames = FrameDecoder().feed(received)
    return [open_frame(sealer, f, guard, keys[f.request_id - 1]) for f in frames]


@pytest.fixture
def server(nodes):
    return nodes("server")


def test_a_sealed_request_is_answered(server, fake):
    key, frame = request_frame("/repos/wire/ok", Sealer(FLEET_KEY))
    received, _ = trio.run(exchange, server.multiaddr(), [frame.encode()])
    (message,) = answers(received, [key])
    assert message.meta["status"] == 200
    assert b'"full_name":"wire/ok"' in message.body
    assert server.stats()["peer_requests_served"] == 1


@pytest.mark.parametrize("payload, reason", [
    (b"\xff" * 64, "exceeds the bound"),  # length 4 GiB: refused before any buffering
    (struct.pack(">I", 64 * 1024 * 1024) + b"x" * 1000, "exceeds the bound"),
    (struct.pack(">I", 3) + b"abc", "shorter than the header"),
    (struct.pack(">IBBQQ", 18, 9, 1, 1, now_ms()), "unsupported protocol version"),
])
def test_garbage_frames_reset_the_stream(server, payload, reason):
    received, ended = trio.run(exchange, server.multiaddr(), [payload])
    assert received == b"" and ended
    assert server.stats()["bad_frames"] == 1
    server.wait_for_log(reason)
    assert server.get("/repos/after/garbage").status_code == 200


def test_wrong_secret_is_refused_and_counted(server):
    wrong = Sealer(derive_key("some-other-secret", NAMESPACE))
    _, frame = request_frame("/repos/wire/secret", wrong)
    received, ended = trio.run(exchange, server.multiaddr(), [frame.encode()])
    assert received == b"" and ended
    assert server.stats()["auth_failures"] == 1
    assert server.stats()["peer_requests_served"] == 0
    # Same secret, other namespace: also another key.
    other_ns = Sealer(derive_key(FLEET_TOKEN, "someone/else"))
    _, frame = request_frame("/repos/wire/secret", other_ns)
    trio.run(exchange, server.multiaddr(), [frame.encode()])
    assert server.stats()["auth_failures"] == 2


def test_stale_and_replayed_frames_are_refused(server):
    sealer = Sealer(FLEET_KEY)
    _, old = request_frame("/repos/wire/old", sealer, ts=now_ms() - 10 * 60 * 1000)
    received, ended = trio.run(exchange, server.multiaddr(), [old.encode()])
    assert received == b"" and ended
    server.wait_for_log("from our clock")

    key, frame = request_frame("/repos/wire/replay", sealer)
    first, _ = trio.run(exchange, server.multiaddr(), [frame.encode()])
    assert answers(first, [key])[0].meta["status"] == 200
    replayed, ended = trio.run(exchange, server.multiaddr(), [frame.encode()])
    assert replayed == b"" and ended
    assert server.stats()["bad_frames"] == 2
    assert server.stats()["peer_requests_served"] == 1


def test_a_peer_may_only_read_api_paths(server, fake):
    sealer = Sealer(FLEET_KEY)
    meta = {"key": "k", "method": "GET", "path": "http://evil.example/x", "headers": {}}
    frame = seal(sealer, REQUEST, 1, Message(meta))
    received, _ = trio.run(exchange, server.multiaddr(), [frame.encode()])
    (message,) = answers(received, ["k"])
    assert message.meta["error"].startswith("bad request")
    assert fake.stats()["requests"] == 0


def test_a_url_in_the_query_is_data_and_the_host_never_changes(server, fake):
    """docs/protocol.md §7.1: `://` in a query is a value (a search for a URL, say), not a
    way off the upstream: the responder fetches the canonical target from its own upstream.
    A `//` in the path is one '/' there; only origin-form paths are taken at all."""
    sealer = Sealer(FLEET_KEY)
    asked = []
    for path in ("/repos/o/r/issues?labels=https://github.com/o/r",
                 "/repos/o/r//evil.example/x", "/repos/o/r/pulls?u=http://evil"):
        meta = {"key": f"k{len(asked)}", "method": "GET", "path": path, "headers": {}}
        received, _ = trio.run(exchange, server.multiaddr(),
                               [seal(sealer, REQUEST, 1, Message(meta)).encode()])
        (message,) = answers(received, [meta["key"]])
        assert "status" in message.meta, message.meta
        asked.append(fake.request_log()[-1])
    assert [(e["path"], e["headers"]["host"]) for e in asked] == [
        ("/repos/o/r/issues?labels=https%3A%2F%2Fgithub.com%2Fo%2Fr", fake.url[7:]),
        ("/repos/o/r/evil.example/x", fake.url[7:]),
        ("/repos/o/r/pulls?u=http%3A%2F%2Fevil", fake.url[7:])]


@pytest.mark.parametrize("path", ["/user", "/user/emails", "/notifications", "/rate_limit",
                                  "/repos/o/r/collaborators", "/search/issues?q=secret"])
def test_a_key_holder_cannot_read_the_servers_own_identity(server, fake, path):
    """What depends on who asks is never answered for a peer (access.py): a peer holding
    the fleet secret still cannot make the server spend its token on its own identity."""
    key, frame = request_frame(path, Sealer(FLEET_KEY))
    received, _ = trio.run(exchange, server.multiaddr(), [frame.encode()])
    (message,) = answers(received, [key])
    assert message.meta["error"].startswith("bad request") and "depends on who asks" in \
        message.meta["error"]
    assert fake.stats()["requests"] == 0


def graphql_frame(query: str, sealer: Sealer, variables: dict | None = None):
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    key = "POST api.github.com/graphql test"
    meta = {"op": "graphql", "key": key, "headers": {"graphql-features": "merge_queue"}}
    return key, seal(sealer, REQUEST, 1, Message(meta, body))


def test_a_shared_graphql_query_is_answered_for_a_peer(server, fake):
    key, frame = graphql_frame(
        "query Q($owner:String!,$name:String!){repository(owner:$owner,name:$name)"
        "{name stargazerCount}}", Sealer(FLEET_KEY), {"owner": "wire", "name": "gql"})
    received, _ = trio.run(exchange, server.multiaddr(), [frame.encode()])
    (message,) = answers(received, [key])
    assert message.meta["status"] == 200, message.meta
    assert json.loads(message.body)["data"]["repository"]["name"] == "gql"
    assert server.stats()["graphql_misses"] == 1


@pytest.mark.parametrize("query", [
    "{viewer{login}}",  # the server's own identity
    "{repository(owner:\"o\",name:\"r\"){viewerPermission}}",  # the server's rights
    "{a:repository(owner:\"o\",name:\"r\"){name} b:repository(owner:\"p\",name:\"s\"){name}}",
    "mutation{addStar(input:{starrableId:\"R_x\"}){clientMutationId}}",  # a write
    "{ not graphql",  # not a document
    "PAD",  # a body past 48 KiB (within the frame): refused before it is read
])
def test_a_key_holder_cannot_make_the_server_ask_graphql_as_itself(server, fake, query):
    """Only a query of one repository whose answer is the same for everyone is answered for
    a peer: anything else (the server's viewer, a mutation, a body that does not parse)
    is refused without a GitHub request."""
    padded = query == "PAD"
    key, frame = graphql_frame("{__typename}" if padded else query, Sealer(FLEET_KEY),
                               {"pad": "x" * 50_000} if padded else None)
    received, _ = trio.run(exchange, server.multiaddr(), [frame.encode()])
    (message,) = answers(received, [key])
    assert message.meta["error"].startswith("bad request"), message.meta
    if padded:
        assert "48 KiB" in message.meta["error"]
    assert fake.stats()["requests"] == 0
