"""Dial-back decisions: whom a node dials when a peer asks "can you reach me?", and how often.

A dial-back proves a peer's port is open from outside (`p2pcache doctor`). Done carelessly it
makes the node a port scanner and banner grabber for every key holder, so:

- only the IP the asking connection comes from is dialled (the port is the asker's choice,
  the host never is), and Noise must prove the asker's own peer ID there;
- the answer is reachable yes/no and the connect time, nothing the target said;
- at most one dial-back per peer per `PER_PEER_INTERVAL`, and `GLOBAL_BURST` at once then
  one per `GLOBAL_INTERVAL` for all peers together (peer IDs cost nothing to make).

Pure: the clock is passed in. The dialling itself is in mesh.py.
"""

from __future__ import annotations

import ipaddress

import multiaddr
from libp2p.peer.id import ID

PER_PEER_INTERVAL = 10.0  # seconds between two dial-backs for the same peer
GLOBAL_BURST = 6  # dial-backs the node does back to back for all peers together ...
GLOBAL_INTERVAL = 10.0  # ... then one more per 10 s: 6 a minute sustained
TIMEOUT = 10.0  # seconds to connect and prove the peer ID


class Limiter:
    """A token bucket for all peers plus a minimum interval per peer."""

    def __init__(self, per_peer: float = PER_PEER_INTERVAL, burst: int = GLOBAL_BURST,
                 interval: float = GLOBAL_INTERVAL) -> None:
        self.per_peer = per_peer
        self.burst = burst
        self.interval = interval
        self._tokens = float(burst)
        self._filled_at: float | None = None
        self._last: dict[str, float] = {}

    def admit(self, peer: str, now: float) -> float:
        """0 if the dial-back may go ahead now (and it is counted), else the seconds to
        wait before this peer may ask again."""
        if self._filled_at is not None:
            self._tokens = min(self.burst,
                               self._tokens + (now - self._filled_at) / self.interval)
        self._filled_at = now
        # Forget peers whose interval has passed: the table stays as small as the rate.
        self._last = {p: t for p, t in self._last.items() if now - t < self.per_peer}
        last = self._last.get(peer)
        if last is not None:
            return self.per_peer - (now - last)
        if self._tokens < 1:
            return (1 - self._tokens) * self.interval
        self._tokens -= 1
        self._last[peer] = now
        return 0.0


def target(observed: tuple[str, int] | None, requested: str, asker: ID) -> multiaddr.Multiaddr:
    """Where to dial: the asker's observed IP, the TCP port of the multiaddr it gave, and its
    own peer ID. ValueError if the request cannot be honoured."""
    try:
        addr = multiaddr.Multiaddr(requested)
        port = int(addr.value_for_protocol("tcp"))
        peer = ID.from_base58(addr.value_for_protocol("p2p"))
    except Exception as exc:  # the multiaddr package raises several unrelated types
        raise ValueError(f"not a dialable multiaddr ({exc})") from None
    if peer != asker:
        raise ValueError("a peer may only ask to be dialled back itself")
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} out of range")
    if observed is None:
        raise ValueError("the asking connection has no IP address to dial back")
    ip = ipaddress.ip_address(observed[0].split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    family = "ip4" if ip.version == 4 else "ip6"
    return multiaddr.Multiaddr(f"/{family}/{ip}/tcp/{port}/p2p/{asker}")
