"""A server node behind a real NAT router (miniupnpd) maps its port by UPnP, publishes
/ip4/203.0.113.42/tcp/<mapped port>/p2p/<id>, and a runner on the WAN side, knowing only that
multiaddr, joins it and gets peer hits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import FLEET_TOKEN, NAMESPACE

from .lab import WAN_IP, NatLab

ROOT = Path(__file__).resolve().parents[2]
FAKE_PORT = 8080


class LabNode:
    """A `p2pcache serve` process inside one of the lab's namespaces."""

    def __init__(self, lab: NatLab, host, name: str, tmp: Path, upstream: str,
                 extra_env: dict[str, str] | None = None, args: list[str] | None = None):
        self.lab, self.host, self.name = lab, host, name
        self.log_path = tmp / f"{name}.log"
        self.env = {"PATH": os.environ["PATH"], "HOME": str(tmp), "PYTHONUNBUFFERED": "1",
                    "GH_TOKEN": FLEET_TOKEN, "GITHUB_API_URL": upstream,
                    "IPFS_ACCELERATE_GITHUB_REPO": NAMESPACE, "P2P_CACHE_PORT": "9100",
                    "P2P_CACHE_HTTP": "127.0.0.1:9180",
                    "P2P_CACHE_DATA_DIR": str(tmp / name), **(extra_env or {})}
        self.args = args or []
        self.proc: subprocess.Popen | None = None
        self.api: httpx.Client | None = None

    def start(self) -> LabNode:
        log = self.log_path.open("ab")
        self.proc = self.lab.popen(self.host, [sys.executable, "-m", "p2pcache", "serve",
                                               *self.args], env=self.env, stdout=log,
                                   stderr=subprocess.STDOUT)
        if self.api is None:
            self.api = httpx.Client(base_url=f"http://127.0.0.1:{self.lab.forward(self.host, 9180)}",
                                    timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log()
            try:
                if self.api.get("/-/healthz").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{self.name} not ready:\n{self.log()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(20)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stats(self) -> dict:
        return self.api.get("/-/stats").json()

    def multiaddr(self) -> str:
        return self.api.get("/-/multiaddr").text.splitlines()[0]

    def wait_for(self, predicate, what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.2)
        raise AssertionError(f"{self.name}: {what} not seen in {timeout} s:\n{self.log()}")


@pytest.fixture
def world(nat_lab, tmp_path):
    """Router + LAN server host + WAN runner host + a fake GitHub on the WAN side."""
    lab = nat_lab
    server_host = lab.add_lan_host("server")
    runner_host = lab.add_wan_host("runner")
    github_host = lab.add_wan_host("github")
    fake = lab.popen(github_host, [sys.executable, str(ROOT / "tests" / "fakegithub.py"),
                                   "--host", "0.0.0.0", "--port", str(FAKE_PORT),
                                   "--token", FLEET_TOKEN],
                     env={"PATH": os.environ["PATH"]}, stdout=subprocess.PIPE)
    assert b"listening" in fake.stdout.readline()
    upstream = f"http://{github_host.ip}:{FAKE_PORT}"
    nodes: list[LabNode] = []

    def node(host, name, **kw) -> LabNode:
        made = LabNode(lab, host, name, tmp_path, upstream, **kw)
        nodes.append(made)
        return made

    yield lab, server_host, runner_host, node
    for made in nodes:
        made.stop()
    fake.terminate()
    fake.wait(10)


UPNP = {"P2P_CACHE_UPNP": "1", "P2P_CACHE_UPNP_LEASE": "6"}  # re-checked every 2 s


def test_server_behind_nat_maps_publishes_and_serves_the_wan(world):
    lab, server_host, runner_host, node = world
    server = node(server_host, "server", extra_env=UPNP).start()
    peer_id = server.stats()["peer_id"]
    assert server.multiaddr() == f"/ip4/{WAN_IP}/tcp/9100/p2p/{peer_id}"
    assert "✓ UPnP: mapped 203.0.113.42:9100 → 192.0.2.10:9100" in server.log()
    assert any(m.external_port == 9100 and m.internal_ip == server_host.ip
               for m in lab.mappings())

    runner = node(runner_host, "runner",
                  extra_env={"MCP_P2P_BOOTSTRAP_PEERS": server.multiaddr()}).start()
    runner.wait_for(lambda: runner.stats()["fleet_servers"] == 1, "connection")
    first = runner.api.get("/repos/nat/demo/commits")
    assert first.status_code == 200 and first.headers["x-p2p-cache"] == "peer"
    assert runner.stats()["peer_hits"] == 1

    # The doctor's outside check: the runner dials the published address back.
    reach = server.api.get("/-/reachability").json()
    assert reach["reachable"] is True, reach
    assert reach["address"] == server.multiaddr()

    server.stop()
    assert "✓ UPnP: removed the mapping of external port 9100" in server.log()
    assert not [m for m in lab.mappings() if m.internal_ip == server_host.ip], \
        "the router holds no mapping once the node stopped"


def test_a_taken_external_port_makes_the_node_publish_another(world):
    lab, server_host, runner_host, node = world
    squatter = lab.add_lan_host("squatter")
    taken = lab.upnp(squatter, f"return u.addportmapping(9100, 'TCP', '{squatter.ip}', 9100, "
                               "'someone else', '')")
    assert taken is True, taken

    server = node(server_host, "server", extra_env=UPNP).start()
    address = server.multiaddr()
    port = int(address.split("/tcp/")[1].split("/")[0])
    assert port != 9100 and address.startswith(f"/ip4/{WAN_IP}/tcp/")
    assert "external port 9100 is held by 192.0.2.11:9100; trying another" in server.log()

    runner = node(runner_host, "runner", extra_env={"MCP_P2P_BOOTSTRAP_PEERS": address}).start()
    runner.wait_for(lambda: runner.stats()["fleet_servers"] == 1, "connection")
    assert runner.api.get("/repos/nat/other-port/commits").headers["x-p2p-cache"] == "peer"
    server.stop()
    remaining = {(m.external_port, m.internal_ip) for m in lab.mappings()}
    assert remaining == {(9100, squatter.ip)}, "only the other host's mapping is left"


def test_the_mapping_comes_back_after_the_router_restarts(world):
    lab, server_host, runner_host, node = world
    server = node(server_host, "server", extra_env=UPNP).start()

    def mapped() -> bool:
        return any(m.internal_ip == server_host.ip and m.external_port == 9100
                   for m in lab.mappings())

    assert mapped()
    lab.restart_miniupnpd()  # like a router reboot: every mapping is gone
    assert not mapped()
    server.wait_for(mapped, "the mapping again", timeout=20)
    assert "the router lost our mapping of port 9100" in server.log()
    runner = node(runner_host, "runner",
                  extra_env={"MCP_P2P_BOOTSTRAP_PEERS": server.multiaddr()}).start()
    runner.wait_for(lambda: runner.stats()["fleet_servers"] == 1, "connection after reboot")


def test_upnp_commands(world):
    lab, server_host, _, _ = world
    env = {"PATH": os.environ["PATH"], "P2P_CACHE_PORT": "9100"}

    def p2pcache(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(lab.command(server_host, [sys.executable, "-m", "p2pcache",
                                                        *args]),
                              env=env, capture_output=True, text=True, timeout=60)

    mapped = p2pcache("upnp", "map")
    assert mapped.returncode == 0, mapped.stderr
    assert "✓ UPnP: mapped 203.0.113.42:9100 → 192.0.2.10:9100" in mapped.stdout
    status = p2pcache("upnp", "status")
    assert "Gateway external IP: 203.0.113.42" in status.stdout
    assert "Mapped: 203.0.113.42:9100 → 192.0.2.10:9100 (p2pcache)" in status.stdout
    assert p2pcache("upnp", "unmap").returncode == 0
    assert not [m for m in lab.mappings() if m.internal_ip == server_host.ip]
    assert "No mapping to this host" in p2pcache("upnp", "status").stdout
