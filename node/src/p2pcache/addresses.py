"""Which address goes into the bootstrap multiaddr: pure ranking plus an interface listing.

Order of trust: --announce, the UPnP gateway's external IP, addresses peers observe, an
IP-echo service, then the best interface address. Private and loopback addresses are only
chosen when nothing public is known.
"""

from __future__ import annotations

import ipaddress

import ifaddr


def interface_ips() -> list[str]:
    ips: list[str] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, tuple):
                address, _flow, scope = ip.ip
                if scope:  # link-local IPv6 needs a zone: not dialable from elsewhere
                    continue
                ips.append(address)
            else:
                ips.append(ip.ip)
    return ips


def rank(ip: str) -> int:
    """Lower is better: global IPv4, global IPv6, private IPv4, private IPv6, loopback."""
    addr = ipaddress.ip_address(ip)
    if addr.is_loopback or addr.is_unspecified:
        return 9
    if addr.is_link_local:
        return 8
    if addr.is_global:
        return 0 if addr.version == 4 else 1
    return 2 if addr.version == 4 else 3


def best_ip(candidates: list[str]) -> str | None:
    usable = [ip for ip in candidates if _is_ip(ip)]
    return min(usable, key=rank) if usable else None


def is_public(ip: str) -> bool:
    return _is_ip(ip) and rank(ip) <= 1


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


def ip_multiaddr(ip: str, port: int, peer_id: str) -> str:
    family = "ip6" if ipaddress.ip_address(ip).version == 6 else "ip4"
    return f"/{family}/{ip}/tcp/{port}/p2p/{peer_id}"


def bootstrap_multiaddr(peer_id: str, port: int, announce: str | None, listen_host: str,
                        candidates: list[str], *, upnp: tuple[str, int] | None = None,
                        observed: list[str] = (), echo: str | None = None) -> str | None:  # type: ignore[assignment]
    """The multiaddr to paste into MCP_P2P_BOOTSTRAP_PEERS, from the most trusted source:

    1. --announce (what the operator says);
    2. the UPnP gateway's external IP and the external port it mapped for us;
    3. public addresses that peers observed (identify), with our listen port;
    4. the IP-echo service's answer, if one is configured;
    5. the listen host, if it is a specific address;
    6. the best interface address (public before private before loopback).
    """
    if announce:
        if announce.startswith("/"):
            base = announce.split("/p2p/")[0].rstrip("/")
            if "/tcp/" not in base:
                base += f"/tcp/{port}"
            return f"{base}/p2p/{peer_id}"
        return ip_multiaddr(announce, port, peer_id)
    if upnp is not None:
        return ip_multiaddr(upnp[0], upnp[1], peer_id)
    public = [ip for ip in observed if is_public(ip)]
    if public:
        return ip_multiaddr(best_ip(public), port, peer_id)  # type: ignore[arg-type]
    if echo and _is_ip(echo):
        return ip_multiaddr(echo, port, peer_id)
    if listen_host not in ("0.0.0.0", "::", ""):
        return ip_multiaddr(listen_host, port, peer_id)
    ip = best_ip(candidates)
    return ip_multiaddr(ip, port, peer_id) if ip else None


def multiaddr_ip(address: str) -> str | None:
    """The IP inside /ip4/... or /ip6/... (None for DNS names and the like)."""
    parts = address.split("/")
    if len(parts) > 2 and parts[1] in ("ip4", "ip6"):
        return parts[2]
    return None
