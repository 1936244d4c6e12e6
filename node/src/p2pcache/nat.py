"""UPnP IGD port mapping with miniupnpc: map, keep, and remove the peer port on the router.

miniupnpc is blocking C, so every call runs in a thread under a deadline. We do not use
py-libp2p's UpnpManager: it maps without a lease, never renews or re-maps, cannot pick
another port when ours is taken, and refuses gateways with reserved external addresses.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Awaitable, Callable

import trio

log = logging.getLogger(__name__)

DISCOVER_MS = 2000
CALL_TIMEOUT = 10.0
DEFAULT_LEASE = 3600  # seconds; renewed well before it lapses
DESCRIPTION = "p2pcache"
ALTERNATIVES = 10  # neighbours of the wanted port to try before random high ports


NO_GATEWAY = ("no UPnP gateway answered on this network: is UPnP enabled on the router? "
              "Does the host firewall let in UDP replies from the router's port 1900? "
              "(In Docker, UPnP needs network_mode: host.)")


class UpnpError(Exception):
    """No gateway, or the gateway refused: one line that says which and what to do."""


@dataclass(frozen=True)
class Mapping:
    external_ip: str
    external_port: int
    internal_ip: str
    internal_port: int
    lease: int  # seconds; 0 = permanent (some routers accept nothing else)


@dataclass(frozen=True)
class Existing:
    internal_ip: str
    internal_port: int
    description: str


# -- pure decisions -------------------------------------------------------------------


def candidate_ports(wanted: int, rng: random.Random | None = None) -> list[int]:
    """The external ports to try, in order: the wanted one, its neighbours, random highs."""
    rng = rng or random.Random()
    near = [p for p in range(wanted, wanted + ALTERNATIVES + 1) if 1024 <= p <= 65535]
    far = [rng.randint(20000, 60000) for _ in range(5)]
    return list(dict.fromkeys(near + far))


def owner(existing: Existing | None, lan_ip: str, internal_port: int) -> str:
    """'free', 'ours' (a mapping to us we can reuse) or 'taken' (another host holds it)."""
    if existing is None:
        return "free"
    if existing.internal_ip == lan_ip and existing.internal_port == internal_port:
        return "ours"
    return "taken"


def check_interval(lease: int) -> float:
    """How often to verify the mapping: well inside the lease, and often enough to notice
    a router restart (which forgets mappings) within a minute."""
    if lease <= 0:
        return 60.0
    return max(1.0, min(lease / 3, 60.0))


# -- the gateway (blocking, run in threads) --------------------------------------------


class Gateway:
    """A thin synchronous face on miniupnpc's IGD client."""

    def __init__(self, discover_ms: int = DISCOVER_MS) -> None:
        import miniupnpc

        self._upnp = miniupnpc.UPnP()
        self._upnp.discoverdelay = discover_ms

    def discover(self) -> tuple[str, str]:
        """(our LAN address, the router's external IP)."""
        try:
            found = self._upnp.discover()
        except Exception as exc:  # miniupnpc reports some successes as Exception("Success")
            if str(exc) != "Success":
                raise UpnpError(f"UPnP discovery failed: {exc}") from None
            found = 1
        if not found:
            raise UpnpError(NO_GATEWAY)
        try:
            self._upnp.selectigd()
        except Exception as exc:
            if "No UPnP device" in str(exc):  # discover() counted replies that never parsed
                raise UpnpError(NO_GATEWAY) from None
            raise UpnpError(f"a UPnP device answered but is no Internet Gateway ({exc})") \
                from None
        return self._upnp.lanaddr, self.external_ip()

    def external_ip(self) -> str:
        try:
            ip = self._upnp.externalipaddress()
        except Exception as exc:
            raise UpnpError(f"the gateway did not give its external IP ({exc})") from None
        if not ip:
            raise UpnpError("the gateway has no external IP (is its WAN link up?)")
        return ip

    def lookup(self, external_port: int) -> Existing | None:
        try:
            found = self._upnp.getspecificportmapping(external_port, "TCP")
        except Exception:
            return None  # NoSuchEntryInArray on most routers
        if not found:
            return None
        internal_ip, internal_port, description = found[0], int(found[1]), str(found[2])
        return Existing(internal_ip, internal_port, description)

    def add(self, external_port: int, internal_ip: str, internal_port: int, lease: int) -> None:
        try:
            self._upnp.addportmapping(external_port, "TCP", internal_ip, internal_port,
                                      DESCRIPTION, "", lease)
        except Exception as exc:
            raise UpnpError(str(exc)) from None

    def delete(self, external_port: int) -> None:
        try:
            self._upnp.deleteportmapping(external_port, "TCP")
        except Exception as exc:
            raise UpnpError(str(exc)) from None

    def mappings(self) -> list[tuple[int, str, int, str]]:
        """Every TCP/UDP mapping the router lists: (external port, internal ip, port, desc)."""
        out = []
        for index in range(1024):
            try:
                entry = self._upnp.getgenericportmapping(index)
            except Exception:
                break
            if entry is None:
                break
            ext_port, proto, (ip, port), desc = entry[0], entry[1], entry[2], entry[3]
            if proto == "TCP":
                out.append((int(ext_port), ip, int(port), str(desc)))
        return out


# -- the async mapper -------------------------------------------------------------------


async def _call(fn: Callable[..., object], *args: object) -> object:
    with trio.fail_after(CALL_TIMEOUT + DISCOVER_MS / 1000):
        return await trio.to_thread.run_sync(fn, *args, abandon_on_cancel=True)


class UpnpMapper:
    """Holds one TCP mapping for the node's peer port for as long as the node runs."""

    def __init__(self, internal_port: int, wanted_port: int | None = None,
                 lease: int = DEFAULT_LEASE,
                 gateway_factory: Callable[[], Gateway] = Gateway) -> None:
        self.internal_port = internal_port
        self.wanted_port = wanted_port or internal_port
        self.lease = lease
        self.mapping: Mapping | None = None
        self._gateway_factory = gateway_factory
        self._gateway: Gateway | None = None

    async def map(self) -> Mapping:
        """Discover the gateway and hold a mapping, trying other ports if ours is taken."""
        gateway = self._gateway_factory()
        lan_ip, external_ip = await _call(gateway.discover)  # type: ignore[misc]
        self._gateway = gateway
        lease = self.lease
        last_error = ""
        for port in candidate_ports(self.wanted_port):
            existing = await _call(gateway.lookup, port)
            state = owner(existing, lan_ip, self.internal_port)  # type: ignore[arg-type]
            if state == "taken":
                log.info("UPnP: external port %d is held by %s:%d; trying another", port,
                         existing.internal_ip, existing.internal_port)  # type: ignore[union-attr]
                continue
            try:
                await _call(gateway.add, port, lan_ip, self.internal_port, lease)
            except UpnpError as exc:
                last_error = str(exc)
                if "OnlyPermanentLeasesSupported" in last_error and lease:
                    lease = 0  # old routers: permanent, removed at shutdown
                    try:
                        await _call(gateway.add, port, lan_ip, self.internal_port, 0)
                    except UpnpError as again:
                        last_error = str(again)
                        continue
                else:
                    log.info("UPnP: mapping external port %d refused (%s); trying another",
                             port, last_error)
                    continue
            self.mapping = Mapping(external_ip, port, lan_ip, self.internal_port, lease)
            return self.mapping
        raise UpnpError(f"the gateway refused every port tried (last: {last_error})")

    async def keep(self, on_change: Callable[[Mapping | None], Awaitable[None]]) -> None:
        """Renew before the lease lapses; re-map after a router restart or IP change."""
        while True:
            await trio.sleep(check_interval(self.mapping.lease if self.mapping else self.lease))
            before = self.mapping
            try:
                await self._check()
            except (UpnpError, trio.TooSlowError) as exc:
                log.warning("⚠️  UPnP: could not verify the port mapping (%s); retrying", exc)
                self.mapping = None
                try:
                    await self.map()
                except (UpnpError, trio.TooSlowError) as again:
                    log.warning("⚠️  UPnP: re-mapping failed: %s", again)
            if self.mapping != before:
                if self.mapping:
                    log.info("✓ UPnP: mapped %s:%d → %s:%d", self.mapping.external_ip,
                             self.mapping.external_port, self.mapping.internal_ip,
                             self.mapping.internal_port)
                await on_change(self.mapping)

    async def _check(self) -> None:
        if self.mapping is None or self._gateway is None:
            await self.map()
            return
        gateway, m = self._gateway, self.mapping
        existing = await _call(gateway.lookup, m.external_port)
        if owner(existing, m.internal_ip, m.internal_port) != "ours":  # type: ignore[arg-type]
            log.warning("⚠️  UPnP: the router lost our mapping of port %d (restarted?); "
                        "mapping again", m.external_port)
            await self.map()
            return
        external_ip = await _call(gateway.external_ip)
        if m.lease:
            await _call(gateway.add, m.external_port, m.internal_ip, m.internal_port, m.lease)
        if external_ip != m.external_ip:
            log.info("UPnP: the router's external IP changed to %s", external_ip)
            self.mapping = Mapping(str(external_ip), m.external_port, m.internal_ip,
                                   m.internal_port, m.lease)

    async def unmap(self) -> None:
        """Remove our mapping (at shutdown): shielded, with a deadline."""
        if self.mapping is None or self._gateway is None:
            return
        mapping, self.mapping = self.mapping, None
        with trio.CancelScope(shield=True):
            try:
                await _call(self._gateway.delete, mapping.external_port)
                log.info("✓ UPnP: removed the mapping of external port %d",
                         mapping.external_port)
            except (UpnpError, trio.TooSlowError) as exc:
                log.warning("⚠️  UPnP: could not remove the mapping of port %d: %s",
                            mapping.external_port, exc)
