"""The libp2p host itself, and throwaway hosts for one-off checks.

Every host p2pcache makes speaks Noise and Yamux only. The throwaway ones dial, never
listen, and are closed after one check: the dial-back probe a server makes for a runner,
and `p2pcache doctor`'s sealed ping of a bootstrap peer.
"""

from __future__ import annotations

import logging
import time

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import INetStream
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as new_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

from .. import dialback
from ..crypto import Sealer, SealError
from ..protocol import PROTOCOL_ID, REQUEST, FrameDecoder, Message, ReplayGuard, open_frame, seal

log = logging.getLogger("p2pcache.mesh")

READ_CHUNK = 64 * 1024
DIALBACK_TIMEOUT = dialback.TIMEOUT


def new_host_for(key_pair: KeyPair):  # -> IHost
    """Noise only and Yamux only: py-libp2p would also offer plaintext, secio and mplex."""
    noise = NoiseTransport(key_pair, noise_privkey=new_x25519_key_pair().private_key)
    return new_host(key_pair=key_pair, sec_opt={NOISE_PROTOCOL_ID: noise},
                    muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux})


def short(peer: ID | str) -> str:
    text = str(peer)
    return text if len(text) <= 16 else f"{text[:8]}…{text[-6:]}"


def reason(exc: BaseException) -> str:
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


def remote_address(stream: INetStream) -> tuple[str, int] | None:
    """The IP and port the peer's connection comes from, as our socket sees them."""
    try:
        return stream.get_remote_address()
    except Exception:
        return None


async def reset(stream: INetStream) -> None:
    with trio.move_on_after(1):
        try:
            await stream.reset()
        except Exception:
            pass


async def probe(where: multiaddr.Multiaddr) -> dict[str, object]:
    """Connect to `where` from a throwaway host that listens nowhere and is closed after:
    reachable or not, and how fast. Nothing the target says is passed on."""
    info = info_from_p2p_addr(where)
    host = new_host_for(create_new_key_pair())
    started = time.perf_counter()
    try:
        async with host.run([]):
            try:
                with trio.fail_after(DIALBACK_TIMEOUT):
                    await host.connect(info)
                return {"reachable": True,
                        "connect_ms": round((time.perf_counter() - started) * 1000, 1)}
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    try:
                        await host.close()
                    except Exception as exc:
                        log.debug("closing the dial-back host failed: %s", reason(exc))
    except Exception as exc:
        log.debug("dial-back to %s failed: %s", where, reason(exc))
        return {"reachable": False}


async def probe_peer(address: str, sealer: Sealer, timeout: float = 10.0) -> dict[str, object]:
    """From a throwaway host: can we connect to `address`, and does it answer a ping sealed
    under our fleet key? (For `p2pcache doctor`; the node is not involved.)"""
    result: dict[str, object] = {"connected": False, "sealed": False, "error": None}
    info = info_from_p2p_addr(multiaddr.Multiaddr(address))
    host = new_host_for(create_new_key_pair())
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
        result["error"] = reason(exc)
    return result
