"""Real libp2p hosts that misbehave towards a node, and a look at the node's process.

Used by the resource-limit tests (and the figures in their docstrings): each attacker is a
py-libp2p host in the test process, speaking TCP + Noise + Yamux to a real node.
"""

from __future__ import annotations

import os
import struct
from contextlib import asynccontextmanager
from typing import AsyncIterator

import multiaddr
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as x25519_key_pair
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE
from libp2p.security.noise.transport import Transport as NoiseTransport

from p2pcache.protocol import PROTOCOL_ID

MiB = 1024 * 1024


@asynccontextmanager
async def peer_host(target: str, listen: bool = False) -> AsyncIterator[object]:
    """A fresh peer ID connected to `target`; listening on loopback if asked."""
    pair = create_new_key_pair()
    noise = NoiseTransport(pair, noise_privkey=x25519_key_pair().private_key)
    host = new_host(key_pair=pair, sec_opt={NOISE: noise}, muxer_preference="YAMUX")
    addrs = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")] if listen else []
    async with host.run(addrs):
        info = info_from_p2p_addr(multiaddr.Multiaddr(target))
        await host.connect(info)
        host.target = info.peer_id  # type: ignore[attr-defined]
        try:
            yield host
        finally:
            await host.close()


async def open_stream(host: object):
    """A cache stream to the node, or None if the node refused or reset it at once."""
    try:
        with trio.fail_after(10):
            return await host.new_stream(host.target, [PROTOCOL_ID])  # type: ignore[attr-defined]
    except Exception:
        return None


def frame_start(length: int) -> bytes:
    """The length prefix of a frame that will never be finished."""
    return struct.pack(">I", length)


async def send_unfinished(stream, declared: int, send: int, chunk: int = 256 * 1024) -> int:
    """Write `send` bytes of a frame that declares `declared`; returns bytes accepted before
    the node reset the stream (all of them if it never did)."""
    sent = 0
    if stream is None:
        return 0
    try:
        await stream.write(frame_start(declared))
        while sent < send:
            part = min(chunk, send - sent)
            await stream.write(b"\0" * part)
            sent += part
    except Exception:  # reset by the node: what the fix is for
        pass
    return sent


async def was_reset(stream, within: float) -> bool:
    """True if the node ends the stream (reset or EOF) within `within` seconds."""
    with trio.move_on_after(within):
        while True:
            try:
                data = await stream.read(65536)
            except Exception:
                return True
            if not data:
                return True
    return False


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def listening_sockets(pid: int) -> int:
    """TCP sockets in LISTEN state that this process holds (from /proc, no psutil)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("tcp", "tcp6"):
        with open(f"/proc/{pid}/net/{table}") as f:
            next(f)
            for line in f:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: TCP_LISTEN
                    count += 1
    return count
