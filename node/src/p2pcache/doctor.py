"""`p2pcache doctor`: the setup guide's troubleshooting, run as checks that say what to do.

Each check is a small function returning a Check; the report is plain text. Network
checks run with deadlines, so a dead peer costs seconds, not minutes.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any

import trio

from . import config

OK, WARN, FAIL, INFO = "✓", "⚠️ ", "✗", "·"


@dataclass
class Check:
    mark: str
    title: str
    detail: str = ""
    fixes: list[str] = field(default_factory=list)

    def render(self) -> str:
        lines = [f"{self.mark} {self.title}" + (f": {self.detail}" if self.detail else "")]
        lines += [f"    → {fix}" for fix in self.fixes]
        return "\n".join(lines)


UNREACHABLE_FIXES = [
    "open TCP {port} on the server's firewall (ufw allow {port}/tcp; firewall-cmd "
    "--permanent --add-port={port}/tcp && firewall-cmd --reload; iptables -A INPUT -p tcp "
    "--dport {port} -j ACCEPT)",
    "check the server node runs (systemctl status p2pcache, or docker compose ps)",
    "check the IP in the multiaddr is the server's public one (p2pcache multiaddr on it)",
    "behind NAT: forward TCP {port} on the router, or run the server with --upnp",
]


def check_bootstrap(settings: config.Settings) -> list[Check]:
    checks = []
    for rejected in settings.bootstrap_rejected:
        checks.append(Check(FAIL, "bootstrap entry unusable", rejected,
                            ["fix MCP_P2P_BOOTSTRAP_PEERS: /ip4/IP/tcp/PORT/p2p/PEER_ID"]))
    if settings.bootstrap:
        checks.append(Check(OK, "bootstrap peers configured",
                            ", ".join(p.multiaddr for p in settings.bootstrap)))
    elif not settings.bootstrap_rejected:
        checks.append(Check(INFO, "no bootstrap peers configured",
                            "fine on the server node; runners need MCP_P2P_BOOTSTRAP_PEERS",
                            ["on runners: set the MCP_P2P_BOOTSTRAP_PEERS secret to the "
                             "server's Bootstrap Multiaddr"]))
    if not settings.secret:
        checks.append(Check(FAIL, "no fleet secret", "P2P sharing is off",
                            ["set P2P_CACHE_SECRET (or GH_TOKEN) the same on every node"]))
    return checks


async def check_peers(settings: config.Settings) -> list[Check]:
    """Dial every bootstrap peer from a throwaway host, then a sealed ping: reachability
    and a matching fleet secret, separately."""
    if not settings.bootstrap or not settings.secret:
        return []
    from .crypto import Sealer, derive_key
    from .mesh import probe_peer

    key = await trio.to_thread.run_sync(derive_key, settings.secret, settings.namespace)
    sealer = Sealer(key)
    checks = []
    for peer in settings.bootstrap:
        port = peer.multiaddr.split("/tcp/")[1].split("/")[0]
        result = await probe_peer(peer.multiaddr, sealer)
        if not result["connected"]:
            checks.append(Check(FAIL, f"cannot connect to bootstrap peer {peer.multiaddr}",
                                str(result["error"]),
                                [f.format(port=port) for f in UNREACHABLE_FIXES]))
        elif not result["sealed"]:
            checks.append(Check(FAIL, f"bootstrap peer {peer.peer_id} reached, but it does "
                                "not answer our sealed ping", str(result["error"]),
                                ["use the same P2P_CACHE_SECRET (or token) and namespace "
                                 "(IPFS_ACCELERATE_GITHUB_REPO) on both nodes; compare the "
                                 "'Fleet key fingerprint' log lines"]))
        else:
            checks.append(Check(OK, f"bootstrap peer {peer.peer_id} reachable",
                                f"connected in {result['connect_ms']} ms, sealed ping answered"))
    return checks


def check_node(settings: config.Settings) -> tuple[list[Check], dict[str, Any] | None]:
    from .client import NodeClient, NodeUnavailable

    client = NodeClient(settings.http_base)
    try:
        stats = client.stats()
    except NodeUnavailable:
        return [Check(WARN, "no node running here", f"nothing answers at {settings.http_base}",
                      ["start one: p2pcache serve (or docker compose up -d)"])], None
    except Exception as exc:
        return [Check(FAIL, "the local node answered oddly", str(exc))], None
    checks = [Check(OK, "node running", f"peer ID {stats['peer_id']}, "
                    f"{stats['connected_peers']} connected peer(s), hit rate "
                    f"{stats['hit_rate']:.0%}")]
    if stats.get("auth_failures"):
        checks.append(Check(WARN, "peers failed authentication",
                            f"{stats['auth_failures']} message(s) sealed under another key",
                            ["a node holds a different P2P_CACHE_SECRET or namespace"]))
    address = stats.get("bootstrap_multiaddr")
    if not address:
        checks.append(Check(FAIL, "no bootstrap multiaddr", "",
                            ["set P2P_CACHE_ANNOUNCE to the public IP, or use --upnp"]))
        return checks, stats
    reach = client.get("/-/reachability").json()
    port = address.split("/tcp/")[1].split("/")[0]
    if reach.get("reachable") is True:
        checks.append(Check(OK, "reachable from outside", f"peer {reach['checked_by']} dialled "
                            f"{address} in {reach.get('connect_ms')} ms"))
    elif reach.get("reachable") is False:
        checks.append(Check(FAIL, "not reachable from outside",
                            f"peer {reach['checked_by']} could not dial {address}: "
                            f"{reach.get('error')}",
                            [f.format(port=port) for f in UNREACHABLE_FIXES]))
    else:
        checks.append(Check(INFO, "reachability from outside not tested",
                            str(reach.get("error")),
                            ["it is tested once a peer is connected: start a runner, or run "
                             f"`nc -zv <public-ip> {port}` from another network"]))
    return checks, stats


async def check_upnp(settings: config.Settings) -> list[Check]:
    from .nat import Gateway, UpnpError

    def look() -> tuple[str, str, list[tuple[int, str, int, str]]]:
        gateway = Gateway()
        lan_ip, external_ip = gateway.discover()
        return lan_ip, external_ip, gateway.mappings()

    try:
        with trio.fail_after(15):
            lan_ip, external_ip, mappings = await trio.to_thread.run_sync(
                look, abandon_on_cancel=True)
    except (UpnpError, trio.TooSlowError) as exc:
        mark = WARN if settings.upnp else INFO
        return [Check(mark, "no UPnP gateway", str(exc) or "discovery timed out",
                      ["forward the port on the router by hand"] if settings.upnp else [])]
    ours = [m for m in mappings if m[1] == lan_ip and m[2] == settings.port]
    if ours:
        return [Check(OK, "UPnP mapping present", ", ".join(
            f"{external_ip}:{m[0]} → {lan_ip}:{m[2]} ({m[3]})" for m in ours))]
    return [Check(WARN if settings.upnp else INFO, "UPnP gateway found, port not mapped",
                  f"external IP {external_ip}, our LAN address {lan_ip}",
                  [f"p2pcache upnp map --port {settings.port}, or serve with --upnp"])]


def check_firewall(port: int) -> list[Check]:
    """Which firewall is active, and whether it lets the port in."""
    def run(*argv: str) -> tuple[int, str]:
        if shutil.which(argv[0]) is None:
            return 127, ""
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return 126, ""
        return done.returncode, done.stdout + done.stderr

    code, out = run("ufw", "status")
    if code == 0 and "Status: active" in out:
        if f"{port}/tcp" in out or f"{port} " in out:
            return [Check(OK, "ufw active, port allowed", f"{port}/tcp")]
        return [Check(FAIL, "ufw active, port not allowed", f"{port}/tcp",
                      [f"sudo ufw allow {port}/tcp"])]
    code, out = run("firewall-cmd", "--state")
    if code == 0 and "running" in out:
        _, ports = run("firewall-cmd", "--list-ports")
        if f"{port}/tcp" in ports.split():
            return [Check(OK, "firewalld running, port open", f"{port}/tcp")]
        return [Check(FAIL, "firewalld running, port not open", f"{port}/tcp",
                      [f"sudo firewall-cmd --permanent --add-port={port}/tcp && "
                       "sudo firewall-cmd --reload"])]
    code, out = run("iptables", "-S", "INPUT")
    if code == 0:
        blocks = "-P INPUT DROP" in out or "-j REJECT" in out or "-j DROP" in out
        opened = f"--dport {port}" in out and "ACCEPT" in out
        if opened:
            return [Check(OK, "iptables: port accepted", f"{port}/tcp")]
        if blocks:
            return [Check(FAIL, "iptables drops or rejects input, no rule for the port",
                          f"{port}/tcp", [f"sudo iptables -A INPUT -p tcp --dport {port} "
                                          "-j ACCEPT && sudo iptables-save"])]
        return [Check(OK, "no host firewall blocks the port", "iptables INPUT accepts")]
    return [Check(INFO, "no host firewall found (ufw, firewalld, iptables)", "")]


async def run_checks(settings: config.Settings, upnp: bool) -> list[Check]:
    checks = check_bootstrap(settings)
    node_checks, _ = await trio.to_thread.run_sync(check_node, settings)
    checks += node_checks
    checks += await check_peers(settings)
    if upnp or settings.upnp:
        checks += await check_upnp(settings)
    checks += await trio.to_thread.run_sync(check_firewall, settings.port)
    return checks
